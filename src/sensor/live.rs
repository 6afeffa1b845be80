//! The sensor in the daemon: one capture per configured interface, each
//! with its own pipeline, its events sent to the judge beside the AMI's.
//! It can only ever add bans: if the capture cannot open or dies, the
//! daemon goes on banning from the AMI, and the log and `status` say so.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event::SecurityEvent;
use crate::sensor::capture::{self, Capture, CaptureError, EtherType, Interface, PortMatch};
use crate::sensor::packet::LinkType;
use crate::sensor::pipeline::Pipeline;
use crate::sensor::signals::{Direction, SignalConfig};

/// What the sensor is watching, from `[sip]`.
#[derive(Clone, Debug)]
pub struct LiveSettings {
    pub interfaces: Vec<Interface>,
    pub ports: Vec<PortMatch>,
    pub tls_ports: Vec<u16>,
    pub signals: SignalConfig,
}

/// One line per interface for `status`: capturing (with its figures) or
/// why not.
#[derive(Debug, Default)]
pub struct SensorStatus {
    lines: Mutex<Vec<(String, String)>>,
}

impl SensorStatus {
    fn set(&self, interface: &Interface, state: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let name = interface.to_string();
        match lines.iter_mut().find(|(n, _)| *n == name) {
            Some(line) => line.1 = state,
            None => lines.push((name, state)),
        }
    }

    /// `sensor on interface eth0: ...` lines.
    pub fn lines(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines
            .iter()
            .map(|(name, state)| format!("sensor on {name}: {state}"))
            .collect()
    }
}

/// Starts one capture task per interface; they end with `shutdown`.
pub fn spawn(
    settings: LiveSettings,
    events: mpsc::Sender<SecurityEvent>,
    status: Arc<SensorStatus>,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let interfaces = if settings.interfaces.is_empty() {
        vec![Interface::Any]
    } else {
        settings.interfaces.clone()
    };
    interfaces
        .into_iter()
        .map(|interface| {
            tokio::spawn(run(
                interface,
                settings.clone(),
                events.clone(),
                Arc::clone(&status),
                shutdown.clone(),
            ))
        })
        .collect()
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn ethertype(e: EtherType) -> u16 {
    match e {
        EtherType::Ipv4 => 0x0800,
        EtherType::Ipv6 => 0x86dd,
        EtherType::Other(x) => x,
    }
}

async fn run(
    interface: Interface,
    settings: LiveSettings,
    events: mpsc::Sender<SecurityEvent>,
    status: Arc<SensorStatus>,
    shutdown: CancellationToken,
) {
    let mut capture = match Capture::open(&interface, &settings.ports) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("SENSOR => not capturing: {e}; banning from the AMI only");
            status.set(&interface, format!("not capturing: {e}"));
            return;
        }
    };
    let ports: Vec<String> = settings.ports.iter().map(|p| p.to_string()).collect();
    tracing::info!(
        "SENSOR => capturing SIP on {interface} ({})",
        ports.join(", ")
    );
    let mut pipeline = Pipeline::new(settings.signals.clone(), settings.tls_ports.clone());
    let mut out: Vec<SecurityEvent> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                pipeline.tick(since_epoch(SystemTime::now()), &mut out);
                let s = pipeline.stats();
                let drops = capture.stats().map(|k| k.drops).unwrap_or(0);
                status.set(&interface, format!(
                    "capturing: {} packets, {} SIP messages, {} kernel drops",
                    s.frames, s.messages, drops
                ));
            }
            frame = capture.recv() => match frame {
                Ok(frame) => {
                    let direction = match frame.direction {
                        capture::Direction::Incoming => Direction::Incoming,
                        capture::Direction::Outgoing => Direction::Outgoing,
                        capture::Direction::Other(_) => Direction::Unknown,
                    };
                    pipeline.frame(
                        since_epoch(frame.timestamp),
                        LinkType::EtherType(ethertype(frame.ethertype)),
                        frame.data,
                        direction,
                        &mut out,
                    );
                }
                Err(e @ CaptureError::InterfaceDown { .. }) => {
                    tracing::warn!("SENSOR => {e}; waiting for it to come back");
                    status.set(&interface, format!("waiting: {e}"));
                }
                Err(e) => {
                    tracing::error!("SENSOR => capture stopped: {e}; banning from the AMI only");
                    status.set(&interface, format!("stopped: {e}"));
                    break;
                }
            },
        }
        for e in out.drain(..) {
            if events.send(e).await.is_err() {
                return;
            }
        }
    }
}
