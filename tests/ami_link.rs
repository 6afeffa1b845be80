//! The AMI link against a fake Asterisk on an ephemeral port, in virtual
//! time (Tokio's paused clock): the reconnect backoff to the second, its
//! reset after a login, a banner that is not Asterisk's, and a ping
//! interval too large for the clock.

mod support;

use std::time::Duration;

use sipban::ami::{self, AmiSettings, Backoff, LinkState, Secret};
use support::FakeAmi;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn settings(ami: &FakeAmi) -> AmiSettings {
    AmiSettings {
        host: "127.0.0.1".into(),
        port: ami.addr.port(),
        username: "sipban".into(),
        secret: Secret::new("getout"),
        ping_interval: None,
        reply_timeout: Duration::from_secs(10),
        backoff: Backoff::default(),
    }
}

/// Seconds between consecutive connections, rounded.
fn gaps(ami: &FakeAmi) -> Vec<u64> {
    ami.connection_times()
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64().round() as u64)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_from_one_second_to_thirty_and_a_login_resets_it() {
    let fake = FakeAmi::start().await;
    fake.set_login_ok(false);
    let (tx, _rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let (handle, task) = ami::client::spawn(settings(&fake), tx, stop.clone());
    fake.wait("8 failed logins", |a| a.failed_logins() >= 8)
        .await;
    assert_eq!(gaps(&fake), [1, 2, 4, 8, 16, 30, 30]);

    // Asterisk is back: one login, then it restarts again. The next attempt
    // comes a second later, not 30.
    fake.set_login_ok(true);
    fake.wait_logins(1).await;
    handle.wait_for(LinkState::Connected).await;
    let before = fake.connections();
    fake.set_login_ok(false);
    fake.drop_clients();
    fake.wait("a reconnect", |a| a.connections() > before).await;
    assert_eq!(gaps(&fake).last(), Some(&1), "{:?}", gaps(&fake));
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_banner_that_is_not_asterisk_never_gets_the_secret() {
    let fake = FakeAmi::start().await;
    fake.set_banner("SSH-2.0-OpenSSH_9.2");
    let (tx, _rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let (_handle, task) = ami::client::spawn(settings(&fake), tx, stop.clone());
    fake.wait("3 connections", |a| a.connections() >= 3).await;
    assert!(fake.secrets_seen().is_empty(), "{:?}", fake.secrets_seen());
    assert_eq!(fake.logins() + fake.failed_logins(), 0);
    // Backoff applies to it like to any failure.
    assert_eq!(gaps(&fake), [1, 2]);

    // The real banner: logged in, with the secret.
    fake.set_banner("Asterisk Call Manager/9.0.0");
    fake.wait_logins(1).await;
    assert_eq!(fake.secrets_seen(), ["getout"]);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_ping_interval_too_large_for_the_clock_means_no_ping_and_a_live_link() {
    let fake = FakeAmi::start().await;
    let (tx, _rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let mut s = settings(&fake);
    s.ping_interval = Some(Duration::from_secs(u64::MAX));
    let (handle, task) = ami::client::spawn(s, tx, stop.clone());
    fake.wait_logins(1).await;
    handle.wait_for(LinkState::Connected).await;
    // Far beyond the 10 s dead-link timeout: still the first connection.
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    assert_eq!(fake.pings(), 0);
    assert_eq!(fake.connections(), 1);
    assert_eq!(handle.state(), LinkState::Connected);
    // The console's ping still works on it.
    assert!(handle.ping().await.is_ok());
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_ping_is_a_dead_link_after_exactly_the_reply_timeout() {
    let fake = FakeAmi::start().await;
    fake.set_answer_pings(false);
    let (tx, _rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let mut s = settings(&fake);
    s.ping_interval = Some(Duration::from_secs(600));
    let (_handle, task) = ami::client::spawn(s, tx, stop.clone());
    fake.wait("a reconnect", |a| a.connections() >= 2).await;
    // 600 s to the ping, 10 s without a Pong, then the 1 s backoff.
    assert_eq!(gaps(&fake), [611]);
    stop.cancel();
    task.await.unwrap();
}
