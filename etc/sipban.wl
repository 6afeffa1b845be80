# SipBan white list
#
# Addresses listed here are never banned. One IPv4/IPv6 address or CIDR
# network per line. Lines starting with "#" and blank lines are ignored.
# Loopback (127.0.0.0/8 and ::1) is never banned anyway, whether listed or not.
#
# Examples:
#192.0.2.10
#198.51.100.0/24
#2001:db8::1
#2001:db8::/48

127.0.0.1
