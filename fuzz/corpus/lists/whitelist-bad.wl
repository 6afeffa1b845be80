# White list with a typo
192.0.2.10

198.51.100.0/24
192.0.2.300   # typo
2001:db8::/48
