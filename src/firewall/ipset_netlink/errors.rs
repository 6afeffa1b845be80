//! What the ipset subsystem's answers mean.

use super::*;

/// What an error code from the ipset subsystem means, with its name and
/// number. `add`: the command was an add (some codes differ by command).
pub fn meaning(code: i32, add: bool, kernel_text: Option<&str>) -> String {
    let (name, what): (&str, String) = match code {
        libc::ENOENT => ("ENOENT", "the set does not exist".into()),
        libc::EPERM => (
            "EPERM",
            "operation not permitted (CAP_NET_ADMIN needed)".into(),
        ),
        4097 => (
            "IPSET_ERR_PROTOCOL",
            "the kernel rejected the message (ipset protocol error: is the \
             set a hash:ip of this address family?)"
                .into(),
        ),
        4098 => ("IPSET_ERR_FIND_TYPE", "set type not supported".into()),
        4099 => ("IPSET_ERR_MAX_SETS", "too many sets".into()),
        4100 => ("IPSET_ERR_BUSY", "set is in use".into()),
        4101 => ("IPSET_ERR_EXIST_SETNAME2", "second set exists".into()),
        4102 => ("IPSET_ERR_TYPE_MISMATCH", "set types do not match".into()),
        4103 if add => ("IPSET_ERR_EXIST", "element is already in the set".into()),
        4103 => ("IPSET_ERR_EXIST", "element is not in the set".into()),
        4104 => ("IPSET_ERR_INVALID_CIDR", "invalid CIDR".into()),
        4105 => ("IPSET_ERR_INVALID_NETMASK", "invalid netmask".into()),
        4106 => (
            "IPSET_ERR_INVALID_FAMILY",
            "address family does not match the set's".into(),
        ),
        4107 => (
            "IPSET_ERR_TIMEOUT",
            "the set was created without timeout support".into(),
        ),
        4108 => ("IPSET_ERR_REFERENCED", "set is referenced".into()),
        4109 => (
            "IPSET_ERR_IPADDR_IPV4",
            "the set expects an IPv4 address".into(),
        ),
        4110 => (
            "IPSET_ERR_IPADDR_IPV6",
            "the set expects an IPv6 address".into(),
        ),
        4111 => ("IPSET_ERR_COUNTER", "the set has no counters".into()),
        4112 => ("IPSET_ERR_COMMENT", "the set has no comments".into()),
        4113 => ("IPSET_ERR_INVALID_MARKMASK", "invalid markmask".into()),
        4114 => ("IPSET_ERR_SKBINFO", "the set has no skbinfo".into()),
        // Type specific: ip_set_hash.h (our sets are hash:ip).
        4352 => (
            "IPSET_ERR_HASH_FULL",
            "the set is full (maxelem reached), cannot add more elements".into(),
        ),
        4353 => (
            "IPSET_ERR_HASH_ELEM",
            "null-valued element (0.0.0.0 or ::) cannot be added or deleted".into(),
        ),
        4354 => ("IPSET_ERR_INVALID_PROTO", "invalid protocol".into()),
        4355 => ("IPSET_ERR_MISSING_PROTO", "protocol missing".into()),
        4356 => (
            "IPSET_ERR_HASH_RANGE_UNSUPPORTED",
            "range not supported".into(),
        ),
        4357 => ("IPSET_ERR_HASH_RANGE", "invalid range".into()),
        4358..4608 => ("IPSET_ERR_TYPE_SPECIFIC", "set type specific error".into()),
        c => ("errno", io::Error::from_raw_os_error(c).to_string()),
    };
    let mut s = if name == "errno" {
        format!("{what} (errno {code})")
    } else if code < 4096 {
        format!("{what} ({name}, errno {code})")
    } else {
        format!("{what} ({name}, ipset error {code})")
    };
    if let Some(t) = kernel_text.filter(|t| !t.is_empty()) {
        s.push_str(": ");
        s.push_str(t);
    }
    s
}

/// Whether every refusal in a batch says the kernel does not understand
/// our messages (`IPSET_ERR_PROTOCOL` on all of them).
pub fn protocol_rejected(refused: &[Refused], sent: usize) -> bool {
    sent > 0 && refused.len() == sent && refused.iter().all(|r| r.code == IPSET_ERR_PROTOCOL)
}
