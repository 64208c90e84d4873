//! The machine credential (reference config.md §4.2): bootstrap with the
//! join token, refresh inside the last 24 h, and `identity.json` (0600, dir
//! 0700, written through `statefile`).
//!
//! **Invariant:** this module is the only writer of `identity.json`.
//!
//! The file records who minted it (`central_url`, and `bootstrap_token_fp` =
//! sha256 of the token), so a re-join with another URL or token re-bootstraps
//! even though the old file survived, and a config that re-points the URL
//! without a token is refused instead of sending the old JWT elsewhere.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::control::client::{CentralClient, ClientError, TokenGrant};
use crate::control::sink::CentralSink;
use crate::paths::Paths;
use crate::statefile::{self, StateRead};

/// Refresh when the JWT expires within this many seconds.
pub const REFRESH_WINDOW_SECS: i64 = 24 * 60 * 60;

/// `identity.json` as on disk. Unknown keys are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub jwt: String,
    pub expires_at: i64,
    pub gateway_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub central_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_token_fp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Where an identity in hand came from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    Bootstrapped,
    Refreshed,
    Loaded,
}

impl IdentitySource {
    pub fn name(self) -> &'static str {
        match self {
            IdentitySource::Bootstrapped => "bootstrapped",
            IdentitySource::Refreshed => "refreshed",
            IdentitySource::Loaded => "loaded",
        }
    }
}

/// Why no identity could be had. Every one of these is retried on the
/// failure ladder by the poll thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// Nothing persisted and no token to bootstrap with.
    NoToken,
    /// The persisted file is damaged and no token can replace it.
    Unusable {
        message: String,
    },
    /// The persisted identity was minted by another server and no token is
    /// configured to bootstrap with the new one.
    UrlMismatch {
        minted_by: String,
        configured: String,
    },
    /// The server said no, or could not be reached.
    Client(ClientError),
    /// The JWT is not `<header>.<payload>.<sig>` with a `sub`.
    BadJwt,
    Write {
        message: String,
    },
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::NoToken => write!(
                f,
                "identity bootstrap failed: identity.bootstrap_token is not set. Run `hyp join <central-url> <token>`"
            ),
            IdentityError::Unusable { message } => write!(
                f,
                "identity file is unusable ({message}): run `hyp join <central-url> <token>` again"
            ),
            IdentityError::UrlMismatch {
                minted_by,
                configured,
            } => write!(
                f,
                "identity central URL mismatch: minted by {minted_by} but the config points at {configured}; run `hyp join {configured} <token>`"
            ),
            IdentityError::Client(err) => write!(f, "{err}"),
            IdentityError::BadJwt => write!(
                f,
                "identity bootstrap failed: the server's jwt has no readable subject"
            ),
            IdentityError::Write { message } => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for IdentityError {}

impl From<ClientError> for IdentityError {
    fn from(err: ClientError) -> IdentityError {
        IdentityError::Client(err)
    }
}

/// Lowercase hex sha256 of the token.
pub fn token_fingerprint(token: &str) -> String {
    crate::hex::hex(&Sha256::digest(token.as_bytes()))
}

/// Get a usable identity for `sink` at daemon start (reference `acquire()`).
pub fn acquire(
    paths: &Paths,
    sink: &CentralSink,
    client: &CentralClient,
    now: Timestamp,
) -> Result<(Identity, IdentitySource), IdentityError> {
    let path = paths.identity();
    let persisted = match statefile::read::<Identity>(&path) {
        StateRead::Missing => None,
        StateRead::Ok(identity) => Some(identity),
        other => {
            let message = other
                .problem(&path)
                .unwrap_or_else(|| "unreadable".to_string());
            if sink.bootstrap_token.is_none() {
                return Err(IdentityError::Unusable { message });
            }
            crate::event!(
                Warn,
                "central.identity_unusable",
                json!({"component": "central", "message": message}),
            );
            None
        }
    };
    let Some(identity) = persisted else {
        let token = sink
            .bootstrap_token
            .as_deref()
            .ok_or(IdentityError::NoToken)?;
        return bootstrap(paths, sink, client, token, None);
    };
    if let Some(token) = sink.bootstrap_token.as_deref()
        && mint_changed(&identity, sink, token)
    {
        return bootstrap(paths, sink, client, token, Some(&identity));
    }
    if let Some(minted_by) = identity.central_url.as_deref()
        && minted_by != sink.url
    {
        return Err(IdentityError::UrlMismatch {
            minted_by: minted_by.to_string(),
            configured: sink.url.clone(),
        });
    }
    refresh_if_due(paths, client, identity, now)
}

/// Whether the persisted identity was minted by another URL or token.
fn mint_changed(identity: &Identity, sink: &CentralSink, token: &str) -> bool {
    if let Some(minted_by) = identity.central_url.as_deref()
        && minted_by != sink.url
    {
        return true;
    }
    let login_for_this_url = identity.origin.as_deref() == Some("login")
        && identity.central_url.as_deref() == Some(sink.url.as_str());
    if login_for_this_url {
        return false;
    }
    identity.bootstrap_token_fp.as_deref() != Some(token_fingerprint(token).as_str())
}

/// Refresh `identity` when it expires within 24 h; otherwise hand it back.
pub fn refresh_if_due(
    paths: &Paths,
    client: &CentralClient,
    identity: Identity,
    now: Timestamp,
) -> Result<(Identity, IdentitySource), IdentityError> {
    if identity.expires_at - now.as_second() > REFRESH_WINDOW_SECS {
        return Ok((identity, IdentitySource::Loaded));
    }
    let refreshed = refresh(paths, client, &identity)?;
    Ok((refreshed, IdentitySource::Refreshed))
}

/// The credential of one process talking to one central server: the
/// identity it holds, acquired on first use, refreshed inside its last 24 h,
/// and renewed once when the server answers 401. Shared by the poll thread
/// and the forward sink, which may run in different processes: a renewal
/// first takes a newer JWT another process already wrote.
#[derive(Debug)]
pub struct Credential {
    paths: Paths,
    sink: CentralSink,
    client: CentralClient,
    held: Option<Identity>,
}

impl Credential {
    pub fn new(paths: &Paths, sink: &CentralSink, client: &CentralClient) -> Credential {
        Credential {
            paths: paths.clone(),
            sink: sink.clone(),
            client: client.clone(),
            held: None,
        }
    }

    /// A JWT to send now: the held identity (refreshed when due), or one
    /// acquired from disk or a bootstrap.
    pub fn jwt(&mut self) -> Result<String, IdentityError> {
        let now = Timestamp::now();
        let first = self.held.is_none();
        let (identity, source) = match self.held.take() {
            None => acquire(&self.paths, &self.sink, &self.client, now),
            Some(held) => refresh_if_due(&self.paths, &self.client, held, now),
        }?;
        if first || source != IdentitySource::Loaded {
            crate::event!(
                Info,
                "central.identity",
                json!({"component": "central", "source": source.name(), "gateway_id": identity.gateway_id}),
            );
        }
        let on_disk = statefile::read::<Identity>(&self.paths.identity());
        if source == IdentitySource::Loaded && !matches!(on_disk, StateRead::Ok(_)) {
            // Removed or damaged while we hold it: write it back rather
            // than leave the next process without a credential.
            persist(&self.paths, &identity)?;
            crate::event!(
                Warn,
                "central.identity_restored",
                json!({"component": "central", "gateway_id": identity.gateway_id}),
            );
        }
        let jwt = identity.jwt.clone();
        self.held = Some(identity);
        Ok(jwt)
    }

    /// The gateway id of the held identity (after [`Credential::jwt`]).
    pub fn gateway_id(&self) -> Option<&str> {
        self.held
            .as_ref()
            .map(|identity| identity.gateway_id.as_str())
    }

    /// The server answered 401: take a newer JWT from `identity.json` if
    /// another process refreshed it, else refresh now.
    pub fn renew(&mut self) -> Result<(), IdentityError> {
        let Some(held) = self.held.take() else {
            return Err(IdentityError::Unusable {
                message: "no identity to refresh".into(),
            });
        };
        if let StateRead::Ok(on_disk) = statefile::read::<Identity>(&self.paths.identity())
            && on_disk.jwt != held.jwt
            && on_disk.central_url == held.central_url
        {
            self.held = Some(on_disk);
            return Ok(());
        }
        match refresh(&self.paths, &self.client, &held) {
            Ok(refreshed) => {
                self.held = Some(refreshed);
                Ok(())
            }
            Err(err) => {
                self.held = Some(held);
                Err(err)
            }
        }
    }
}

/// `POST /v1/identity/refresh` and persist; keeps url, fingerprint, origin.
pub fn refresh(
    paths: &Paths,
    client: &CentralClient,
    identity: &Identity,
) -> Result<Identity, IdentityError> {
    let grant = client.refresh(&identity.jwt)?;
    let gateway_id = jwt_subject(&grant.jwt).unwrap_or_else(|| identity.gateway_id.clone());
    let refreshed = Identity {
        jwt: grant.jwt,
        expires_at: grant.expires_at,
        gateway_id,
        ..identity.clone()
    };
    persist(paths, &refreshed)?;
    crate::event!(
        Info,
        "central.identity_refreshed",
        json!({"component": "central", "gateway_id": refreshed.gateway_id, "expires_at": refreshed.expires_at}),
    );
    Ok(refreshed)
}

fn bootstrap(
    paths: &Paths,
    sink: &CentralSink,
    client: &CentralClient,
    token: &str,
    previous: Option<&Identity>,
) -> Result<(Identity, IdentitySource), IdentityError> {
    let TokenGrant { jwt, expires_at } = client.bootstrap(token)?;
    let gateway_id = jwt_subject(&jwt).ok_or(IdentityError::BadJwt)?;
    let identity = Identity {
        jwt,
        expires_at,
        gateway_id,
        central_url: Some(sink.url.clone()),
        bootstrap_token_fp: Some(token_fingerprint(token)),
        origin: None,
        other: Map::new(),
    };
    persist(paths, &identity)?;
    crate::event!(
        Info,
        "central.identity_bootstrapped",
        json!({"component": "central", "gateway_id": identity.gateway_id, "central_url": sink.url, "rebootstrap": previous.is_some()}),
    );
    Ok((identity, IdentitySource::Bootstrapped))
}

fn persist(paths: &Paths, identity: &Identity) -> Result<(), IdentityError> {
    let write = |err: &dyn fmt::Display| IdentityError::Write {
        message: err.to_string(),
    };
    let dir = paths.identity_dir();
    statefile::create_private_dir(&dir).map_err(|err| write(&err))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(statefile::DIR_MODE))
        .map_err(|err| write(&err))?;
    // The write makes the file 0600 whatever the umask.
    statefile::write(&paths.identity(), identity).map_err(|err| write(&err))
}

/// The `sub` of a JWT's payload, read without verifying the signature.
pub fn jwt_subject(jwt: &str) -> Option<String> {
    let mut parts = jwt.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let bytes = base64url_decode(payload)?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    match claims.get("sub")? {
        Value::String(sub) if !sub.is_empty() => Some(sub.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Unpadded (or padded) base64url, as JWT segments use.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0u32;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_subject_of_a_jwt() {
        // {"alg":"none"} . {"sub":"gw-1"} . sig
        let jwt = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJndy0xIn0.sig";
        assert_eq!(jwt_subject(jwt).as_deref(), Some("gw-1"));
        assert_eq!(jwt_subject("a.b"), None);
        assert_eq!(jwt_subject("a.b.c.d"), None);
        assert_eq!(jwt_subject("eyJhbGciOiJub25lIn0.eyJ4IjoxfQ.sig"), None);
    }

    #[test]
    fn fingerprint_is_lowercase_hex_sha256() {
        assert_eq!(
            token_fingerprint("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn sink(url: &str, token: Option<&str>) -> CentralSink {
        CentralSink {
            name: "central".into(),
            url: url.into(),
            bootstrap_token: token.map(str::to_string),
            poll_interval: std::time::Duration::from_secs(300),
            schedule: None,
        }
    }

    fn identity(url: Option<&str>, token: Option<&str>) -> Identity {
        Identity {
            jwt: "j".into(),
            expires_at: 0,
            gateway_id: "gw".into(),
            central_url: url.map(str::to_string),
            bootstrap_token_fp: token.map(token_fingerprint),
            origin: None,
            other: Map::new(),
        }
    }

    #[test]
    fn the_mint_changes_with_the_url_or_the_token() {
        let same = identity(Some("http://a"), Some("tok"));
        assert!(!mint_changed(&same, &sink("http://a", Some("tok")), "tok"));
        assert!(mint_changed(&same, &sink("http://a/", Some("tok")), "tok"));
        assert!(mint_changed(&same, &sink("http://a", Some("tok2")), "tok2"));
        let no_fp = identity(Some("http://a"), None);
        assert!(mint_changed(&no_fp, &sink("http://a", Some("tok")), "tok"));
        let mut login = identity(Some("http://a"), None);
        login.origin = Some("login".into());
        assert!(!mint_changed(&login, &sink("http://a", Some("tok")), "tok"));
    }
}
