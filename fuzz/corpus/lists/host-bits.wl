# office networks
192.0.2.10
10.0.0.1/8 head office, typed from the router's address
2001:db8:1::1/48 office v6
