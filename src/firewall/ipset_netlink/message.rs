//! The messages: set name check and the encoding of one add or delete.

use super::*;

pub(super) fn check_name(set: &str) -> Result<(), String> {
    if set.is_empty() {
        Err("empty set name".into())
    } else if set.len() >= IPSET_MAXNAMELEN {
        Err(format!(
            "set name longer than {} bytes",
            IPSET_MAXNAMELEN - 1
        ))
    } else if set.as_bytes().contains(&0) {
        Err("NUL byte in set name".into())
    } else {
        Ok(())
    }
}

/// Starts an ipset command message; returns where it starts.
pub(super) fn begin_msg(buf: &mut Vec<u8>, cmd: u16, family: u8, seq: u32) -> usize {
    netlink::begin_msg(
        buf,
        (NFNL_SUBSYS_IPSET << 8) | cmd,
        NLM_F_REQUEST | NLM_F_ACK,
        family,
        seq,
    )
}

/// Appends one add/del message. The set name must have passed `check_name`.
pub(super) fn encode(buf: &mut Vec<u8>, protocol: u8, seq: u32, c: &Change<'_>) {
    let (cmd, family) = match (c.timeout, c.ip) {
        (Some(_), IpAddr::V4(_)) => (IPSET_CMD_ADD, libc::AF_INET),
        (Some(_), IpAddr::V6(_)) => (IPSET_CMD_ADD, libc::AF_INET6),
        (None, IpAddr::V4(_)) => (IPSET_CMD_DEL, libc::AF_INET),
        (None, IpAddr::V6(_)) => (IPSET_CMD_DEL, libc::AF_INET6),
    };
    let at = begin_msg(buf, cmd, family as u8, seq);
    put_attr(buf, IPSET_ATTR_PROTOCOL, &[protocol]);
    let mut name = [0u8; IPSET_MAXNAMELEN];
    name[..c.set.len()].copy_from_slice(c.set.as_bytes());
    put_attr(buf, IPSET_ATTR_SETNAME, &name[..=c.set.len()]);
    let data = begin_nest(buf, IPSET_ATTR_DATA);
    let ip = begin_nest(buf, IPSET_ATTR_IP);
    match c.ip {
        IpAddr::V4(a) => put_attr(
            buf,
            IPSET_ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER,
            &a.octets(),
        ),
        IpAddr::V6(a) => put_attr(
            buf,
            IPSET_ATTR_IPADDR_IPV6 | NLA_F_NET_BYTEORDER,
            &a.octets(),
        ),
    }
    end_nest(buf, ip);
    if let Some(t) = c.timeout {
        put_attr(
            buf,
            IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER,
            &t.to_be_bytes(),
        );
    }
    end_nest(buf, data);
    end_msg(buf, at);
}
