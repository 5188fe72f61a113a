//! Credentials of the stores this agent reads and writes, delivered out of
//! band: the daemon never sends them (see ARCHITECTURE.md, "Distributed
//! mode and trust").
//!
//! The secrets file holds `accessKeyId=secretKey` lines (`#` comments and
//! blank lines ignored) and must not be readable by other users.

use std::collections::HashMap;
use std::path::Path;

use proto::Secret;
use proto::job::JobSpec;

/// Secret keys by access key id.
#[derive(Clone, Default)]
pub struct Secrets(HashMap<String, Secret>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Secrets {
    pub fn load(path: &Path) -> Result<Secrets, String> {
        let text = proto::secret::read_private(path)?;
        Secrets::parse(&path.display().to_string(), &text)
    }

    pub fn parse(label: &str, text: &str) -> Result<Secrets, String> {
        let mut map = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("{label}:{}: expected accessKeyId=secretKey", i + 1))?;
            map.insert(k.trim().to_string(), Secret::new(v.trim()));
        }
        Ok(Secrets(map))
    }

    pub fn insert(&mut self, access_key: &str, secret: Secret) {
        self.0.insert(access_key.to_string(), secret);
    }

    /// Fills the blanked credentials of a job received from the daemon.
    pub fn fill(&self, mut spec: JobSpec) -> Result<JobSpec, String> {
        for b in spec.buckets_mut() {
            self.fill_one(&b.access_key, &mut b.secret_key)?;
        }
        Ok(spec)
    }

    fn fill_one(&self, access_key: &str, secret: &mut Secret) -> Result<(), String> {
        if access_key.is_empty() || !secret.is_empty() {
            return Ok(());
        }
        *secret = self.0.get(access_key).cloned().ok_or_else(|| {
            format!("this agent has no secret for access key {access_key}; add `{access_key}=...` to its secrets file")
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Secrets;

    #[test]
    fn parses_pairs_and_hides_values() {
        let s = Secrets::parse("f", "# c\nAK1 = sk1\n\nAK2=sk=2\n").unwrap();
        assert_eq!(s.0["AK1"].expose(), "sk1");
        assert_eq!(s.0["AK2"].expose(), "sk=2");
        assert!(!format!("{s:?}").contains("sk1"));
        assert!(Secrets::parse("f", "nokey\n").is_err());
    }
}
