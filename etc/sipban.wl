# SipBan white list
#
# Addresses listed here are never banned. One IPv4/IPv6 address or CIDR
# network per line, optionally followed by a note. "#" starts a comment;
# blank lines are ignored. Write networks with their host bits clear
# (10.0.0.0/8, not 10.0.0.1/8: that is read as 10.0.0.0/8 with a warning).
# An entry covering every address (0.0.0.0/0, ::/0) is refused: nothing
# would ever be banned.
# Loopback (127.0.0.0/8 and ::1) is never banned anyway, whether listed or not.
#
# Examples:
#192.0.2.10
#198.51.100.0/24
#2001:db8::1
#2001:db8::/48

127.0.0.1
