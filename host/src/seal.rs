//! PURE: the operator's secret key and what it vouches for.
//!
//! Tenants of a monitored namespace may create Secrets there, with any name, label or
//! annotation; labels alone prove nothing. Two things the operator acts on must therefore be
//! provably its own (or its helper's):
//!
//! * **a run's output hand-over** — the staging Secret of a Job's pod is accepted only with a
//!   MAC made with that run's [`RunKey`]. The run key is derived from the operator key and
//!   the run's identity (namespace, QuarksJob uid, Job name), so the operator needs no lookup
//!   to check it; it reaches only the run's helper container (a Secret mounted there alone);
//! * **a version of a versioned secret** — `<prefix>-v<N>` counts as a version only with the
//!   operator's seal over its namespace, name and number, so a foreign `-v999999` neither
//!   redirects references nor moves the next number.
//!
//! The operator key is 32 random bytes kept in a Secret of the operator's own namespace
//! (`runtime` loads or creates it), shared by all replicas and kept across restarts. MACs are
//! HMAC-SHA256 over length-framed parts, so no two different part lists read the same.
//! Key bytes never appear in `Debug` output.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the operator key and of run keys.
pub const KEY_LEN: usize = 32;

/// Domain separation: a MAC made for one purpose never verifies for another.
const RUN_KEY_DOMAIN: &[u8] = b"quarks-job run key v1";
const VERSION_SEAL_DOMAIN: &[u8] = b"quarks-job version seal v1";

/// The operator's secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct OperatorKey([u8; KEY_LEN]);

/// The key of one run's hand-over: the helper signs with it, the operator checks.
#[derive(Clone, PartialEq, Eq)]
pub struct RunKey([u8; KEY_LEN]);

/// Which run a run key is for. The uid makes a QuarksJob deleted and re-created under the same
/// name a different run identity; the Job name carries the run number.
#[derive(Clone, Copy, Debug)]
pub struct RunIdentity<'a> {
    pub namespace: &'a str,
    pub qjob_uid: &'a str,
    pub job_name: &'a str,
}

impl OperatorKey {
    /// A new random key.
    pub fn generate() -> Result<OperatorKey, getrandom::Error> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes)?;
        Ok(OperatorKey(bytes))
    }

    /// The key stored as these bytes; `None` unless exactly [`KEY_LEN`] of them.
    pub fn from_bytes(bytes: &[u8]) -> Option<OperatorKey> {
        bytes.try_into().ok().map(OperatorKey)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The hand-over key of one run.
    pub fn run_key(&self, run: RunIdentity<'_>) -> RunKey {
        let tag = mac_parts(
            &self.0,
            [
                RUN_KEY_DOMAIN,
                run.namespace.as_bytes(),
                run.qjob_uid.as_bytes(),
                run.job_name.as_bytes(),
            ],
        );
        RunKey(tag)
    }

    /// The seal of version `version` of a versioned secret `name` (`<prefix>-v<N>`), hex.
    pub fn version_seal(&self, namespace: &str, name: &str, version: u64) -> String {
        hex::encode(
            self.version_mac(namespace, name, version)
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `seal` is this key's seal of that version (constant-time comparison).
    pub fn verify_version_seal(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
        seal: &str,
    ) -> bool {
        hex::decode(seal).is_ok_and(|given| {
            self.version_mac(namespace, name, version)
                .verify_slice(&given)
                .is_ok()
        })
    }

    fn version_mac(&self, namespace: &str, name: &str, version: u64) -> HmacSha256 {
        let mut mac = framed_mac(&self.0);
        for part in [
            VERSION_SEAL_DOMAIN,
            namespace.as_bytes(),
            name.as_bytes(),
            version.to_string().as_bytes(),
        ] {
            update_framed(&mut mac, part);
        }
        mac
    }
}

impl RunKey {
    /// The key as mounted into the helper container; `None` unless exactly [`KEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<RunKey> {
        bytes.try_into().ok().map(RunKey)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Starts a MAC over framed parts (feed it with [`Signature::part`]).
    pub fn signature(&self) -> Signature {
        Signature(framed_mac(&self.0))
    }
}

/// A MAC being computed over length-framed parts.
pub struct Signature(HmacSha256);

impl Signature {
    /// Adds one part (its length first, so parts never run into each other).
    pub fn part(mut self, bytes: &[u8]) -> Signature {
        update_framed(&mut self.0, bytes);
        self
    }

    /// The MAC, hex.
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize().into_bytes())
    }

    /// Whether `given` (hex) is the MAC (constant-time comparison).
    pub fn verify(self, given: &str) -> bool {
        hex::decode(given).is_ok_and(|bytes| self.0.verify_slice(&bytes).is_ok())
    }
}

fn framed_mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; 32 bytes never fails.
    <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

fn update_framed(mac: &mut HmacSha256, part: &[u8]) {
    mac.update(&(part.len() as u64).to_be_bytes());
    mac.update(part);
}

fn mac_parts<'a>(key: &[u8], parts: impl IntoIterator<Item = &'a [u8]>) -> [u8; KEY_LEN] {
    let mut mac = framed_mac(key);
    for part in parts {
        update_framed(&mut mac, part);
    }
    mac.finalize().into_bytes().into()
}

impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorKey(..)")
    }
}

impl std::fmt::Debug for RunKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> OperatorKey {
        OperatorKey::from_bytes(&[byte; KEY_LEN]).unwrap()
    }

    fn run<'a>(job_name: &'a str, qjob_uid: &'a str) -> RunIdentity<'a> {
        RunIdentity {
            namespace: "ns",
            qjob_uid,
            job_name,
        }
    }

    #[test]
    fn run_keys_differ_per_run_per_quarks_job_and_per_operator_key() {
        let a = key(1).run_key(run("q-1", "uid-a"));
        assert_eq!(a, key(1).run_key(run("q-1", "uid-a")));
        assert_ne!(a, key(1).run_key(run("q-2", "uid-a")));
        // The same name re-created is another QuarksJob.
        assert_ne!(a, key(1).run_key(run("q-1", "uid-b")));
        assert_ne!(a, key(2).run_key(run("q-1", "uid-a")));
    }

    #[test]
    fn a_signature_verifies_only_for_the_same_parts_and_key() {
        let k = key(1).run_key(run("q-1", "u"));
        let sig = k.signature().part(b"ab").part(b"c").finish();
        assert!(k.signature().part(b"ab").part(b"c").verify(&sig));
        // Framing: the same bytes split differently are different messages.
        assert!(!k.signature().part(b"a").part(b"bc").verify(&sig));
        assert!(!k.signature().part(b"abc").verify(&sig));
        let other = key(1).run_key(run("q-2", "u"));
        assert!(!other.signature().part(b"ab").part(b"c").verify(&sig));
        assert!(!k.signature().part(b"ab").part(b"c").verify("not hex"));
        assert!(!k.signature().part(b"ab").part(b"c").verify(""));
    }

    #[test]
    fn version_seals_bind_namespace_name_and_number() {
        let k = key(7);
        let seal = k.version_seal("ns", "db-v3", 3);
        assert!(k.verify_version_seal("ns", "db-v3", 3, &seal));
        assert!(!k.verify_version_seal("ns", "db-v4", 4, &seal));
        assert!(!k.verify_version_seal("other", "db-v3", 3, &seal));
        assert!(!key(8).verify_version_seal("ns", "db-v3", 3, &seal));
        assert!(!k.verify_version_seal("ns", "db-v3", 3, "zz"));
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let k = key(0xab);
        assert_eq!(format!("{k:?}"), "OperatorKey(..)");
        assert!(!format!("{:?}", k.run_key(run("q-1", "u"))).contains("ab"));
        assert_eq!(OperatorKey::from_bytes(&[1; 31]), None);
        assert_ne!(
            OperatorKey::generate().unwrap(),
            OperatorKey::generate().unwrap()
        );
    }
}
