//! Validated handoff messages: what a receiver acts on after checking the protocol rules.

use std::os::fd::OwnedFd;

use super::pb::{AgentRequest, ZtunnelMessage, agent_request, ztunnel_message};

/// A message that is well-formed protobuf but breaks the handoff protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The message has no payload (sender bug or newer, unknown message type).
    #[error("handoff {0} has no payload (unknown message type from a newer peer?)")]
    NoPayload(&'static str),
    /// An `Add` came without the pod's netns fd.
    #[error(
        "Add for pod {uid:?} carries no netns file descriptor; the agent must attach exactly one"
    )]
    AddWithoutFd {
        /// Pod uid.
        uid: String,
    },
    /// An `Add` came with more than one fd.
    #[error(
        "Add for pod {uid:?} carries {count} file descriptors; the agent must attach exactly one"
    )]
    AddWithExtraFds {
        /// Pod uid.
        uid: String,
        /// Descriptors received (capped by the receive buffer).
        count: usize,
    },
    /// A message other than `Add` came with fds.
    #[error("{kind} carries {count} file descriptor(s); only Add may carry one")]
    UnexpectedFds {
        /// Message kind.
        kind: &'static str,
        /// Descriptors received.
        count: usize,
    },
    /// A required string field is empty.
    #[error("{kind} has an empty {field}")]
    EmptyField {
        /// Message kind.
        kind: &'static str,
        /// Field name.
        field: &'static str,
    },
}

/// A pod handed to ztunnel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodInfo {
    /// Kubernetes pod UID.
    pub uid: String,
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Service account (the pod's identity).
    pub service_account: String,
}

/// A validated agent request (ztunnel side).
#[derive(Debug)]
pub enum Command {
    /// Serve `pod`, whose network namespace is `netns`.
    Add {
        /// The pod.
        pod: PodInfo,
        /// The pod's network namespace.
        netns: OwnedFd,
    },
    /// During a replay: the pod stays (ztunnel keeps its existing sockets).
    Keep {
        /// Pod uid.
        uid: String,
    },
    /// Stop serving the pod.
    Del {
        /// Pod uid.
        uid: String,
    },
    /// The replay is complete: drop pods not named since the connection started.
    SnapshotDone,
}

fn no_fds(kind: &'static str, fds: &[OwnedFd]) -> Result<(), CommandError> {
    if fds.is_empty() {
        Ok(())
    } else {
        Err(CommandError::UnexpectedFds {
            kind,
            count: fds.len(),
        })
    }
}

fn required(
    kind: &'static str,
    field: &'static str,
    value: String,
) -> Result<String, CommandError> {
    if value.is_empty() {
        Err(CommandError::EmptyField { kind, field })
    } else {
        Ok(value)
    }
}

impl Command {
    /// Checks `req` and the `fds` received with it: `Add` must carry exactly one fd and
    /// non-empty fields, other requests none and a non-empty uid. Rejected fds are closed.
    pub fn from_request(req: AgentRequest, mut fds: Vec<OwnedFd>) -> Result<Self, CommandError> {
        use agent_request::Payload;
        match req.payload.ok_or(CommandError::NoPayload("AgentRequest"))? {
            Payload::Add(add) => {
                let uid = required("Add", "uid", add.uid)?;
                let netns = match (fds.pop(), fds.len()) {
                    (None, _) => return Err(CommandError::AddWithoutFd { uid }),
                    (Some(fd), 0) => fd,
                    (Some(_), rest) => {
                        return Err(CommandError::AddWithExtraFds {
                            uid,
                            count: rest + 1,
                        });
                    }
                };
                let pod = PodInfo {
                    uid,
                    name: required("Add", "name", add.name)?,
                    namespace: required("Add", "namespace", add.namespace)?,
                    service_account: required("Add", "service_account", add.service_account)?,
                };
                Ok(Self::Add { pod, netns })
            }
            Payload::Keep(k) => {
                no_fds("Keep", &fds)?;
                Ok(Self::Keep {
                    uid: required("Keep", "uid", k.uid)?,
                })
            }
            Payload::Del(d) => {
                no_fds("Del", &fds)?;
                Ok(Self::Del {
                    uid: required("Del", "uid", d.uid)?,
                })
            }
            Payload::SnapshotDone(_) => {
                no_fds("SnapshotDone", &fds)?;
                Ok(Self::SnapshotDone)
            }
        }
    }
}

/// A validated ztunnel message (agent side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// ztunnel connected and speaks this protocol version.
    Hello {
        /// Protocol version.
        version: u32,
    },
    /// Answer to the last request: `Err` carries ztunnel's reason.
    Ack(Result<(), String>),
}

impl Reply {
    /// Checks `msg` and that no fds came with it.
    pub fn from_message(msg: ZtunnelMessage, fds: Vec<OwnedFd>) -> Result<Self, CommandError> {
        use ztunnel_message::Payload;
        match msg
            .payload
            .ok_or(CommandError::NoPayload("ZtunnelMessage"))?
        {
            Payload::Hello(h) => {
                no_fds("Hello", &fds)?;
                Ok(Self::Hello { version: h.version })
            }
            Payload::Ack(a) => {
                no_fds("Ack", &fds)?;
                Ok(Self::Ack(if a.error.is_empty() {
                    Ok(())
                } else {
                    Err(a.error)
                }))
            }
        }
    }
}
