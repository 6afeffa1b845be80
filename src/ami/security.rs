//! AMI message -> [`SecurityEvent`]. Only messages of the `security` class
//! are events for us; everything else (responses, other classes) is ignored.

use thiserror::Error;

use super::message::AmiMessage;
use super::remote_address::{AddressError, RemoteAddress};
use crate::event::{EventKind, Origin, SecurityEvent};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EventError {
    #[error("{event} event without RemoteAddress")]
    MissingAddress { event: String },
    #[error("{event} event: {source}")]
    BadAddress {
        event: String,
        #[source]
        source: AddressError,
    },
}

/// `Ok(None)` for anything that is not a security event.
pub fn from_message(msg: &AmiMessage) -> Result<Option<SecurityEvent>, EventError> {
    let Some(name) = msg.get("Event") else {
        return Ok(None);
    };
    let security = msg.get("Privilege").is_some_and(|p| {
        p.split(',')
            .any(|c| c.trim().eq_ignore_ascii_case("security"))
    });
    if !security {
        return Ok(None);
    }
    let kind = EventKind::from_name(name);
    let raw = msg
        .get("RemoteAddress")
        .ok_or_else(|| EventError::MissingAddress {
            event: name.to_string(),
        })?;
    let addr: RemoteAddress = raw.parse().map_err(|source| EventError::BadAddress {
        event: name.to_string(),
        source,
    })?;
    Ok(Some(SecurityEvent {
        kind,
        service: msg.get("Service").unwrap_or_default().to_string(),
        account: msg.get("AccountID").unwrap_or_default().to_string(),
        source: addr.ip,
        port: addr.port,
        transport: addr.transport,
        event_time: msg.get("EventTV").map(str::to_string),
        origin: Origin::Ami,
        sip: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_event_is_mapped() {
        let m = AmiMessage::parse(
            "Event: InvalidPassword\r\nPrivilege: security,all\r\nService: SIP\r\nAccountID: 2001\r\nRemoteAddress: IPV4/UDP/203.0.113.13/5060\r\n",
        );
        let ev = from_message(&m).unwrap().unwrap();
        assert_eq!(ev.kind, EventKind::InvalidPassword);
        assert_eq!(ev.service, "SIP");
        assert_eq!(ev.account, "2001");
        assert_eq!(ev.source.to_string(), "203.0.113.13");
    }

    #[test]
    fn non_security_is_ignored() {
        let m = AmiMessage::parse("Event: Newchannel\r\nPrivilege: call,all\r\n");
        assert_eq!(from_message(&m), Ok(None));
        let m = AmiMessage::parse("Response: Success\r\nPing: Pong\r\n");
        assert_eq!(from_message(&m), Ok(None));
    }

    #[test]
    fn bad_address_is_an_error_naming_the_raw_value() {
        let m = AmiMessage::parse(
            "Event: InvalidAccountID\r\nPrivilege: security,all\r\nRemoteAddress: IPV4/UDP/bogus/1\r\n",
        );
        let err = from_message(&m).unwrap_err();
        assert!(err.to_string().contains("IPV4/UDP/bogus/1"), "{err}");
    }
}
