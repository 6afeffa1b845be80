# office networks
198.51.100.0/24 office LAN
# temporarily, while testing
0.0.0.0/0 everyone
