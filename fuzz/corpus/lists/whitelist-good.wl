# Office and provider addresses that must never be banned

192.0.2.10
198.51.100.0/24   # office LAN

2001:db8::7
2001:db8:1::/48 # provider

   # indented comment
10.1.2.3/16
