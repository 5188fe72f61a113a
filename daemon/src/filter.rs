//! Include/exclude filters on relative paths (`includeGlobs`,
//! `excludeGlobs`). A pattern without `/` is matched against the file name,
//! one with `/` against the whole relative path. `*` and `?` do not cross
//! `/`; `**` does; `[abc]`, `[a-z]` and `[!a]` are character classes.

/// Decides which listed objects belong to the job.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Filter {
        Filter {
            include: include.to_vec(),
            exclude: exclude.to_vec(),
        }
    }

    /// True when the path is included (no include patterns = everything)
    /// and not excluded.
    pub fn accepts(&self, rel_path: &str) -> bool {
        let name = rel_path.rsplit('/').next().unwrap_or(rel_path);
        let hit = |p: &String| {
            let subject = if p.contains('/') { rel_path } else { name };
            glob_match(p.as_bytes(), subject.as_bytes())
        };
        (self.include.is_empty() || self.include.iter().any(hit)) && !self.exclude.iter().any(hit)
    }
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') if p.get(1) == Some(&b'*') => {
            // `**/` also matches zero directories.
            let rest = &p[2..];
            let rest_no_slash = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=s.len()).any(|i| glob_match(rest, &s[i..]) || glob_match(rest_no_slash, &s[i..]))
        }
        Some(b'*') => {
            let rest = &p[1..];
            for i in 0..=s.len() {
                if glob_match(rest, &s[i..]) {
                    return true;
                }
                if i < s.len() && s[i] == b'/' {
                    break;
                }
            }
            false
        }
        Some(b'?') => !s.is_empty() && s[0] != b'/' && glob_match(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(end) = p.iter().skip(1).position(|&c| c == b']').map(|i| i + 1) else {
                return !s.is_empty() && s[0] == b'[' && glob_match(&p[1..], &s[1..]);
            };
            let Some(&c) = s.first() else { return false };
            let (negate, class) = match p[1] {
                b'!' | b'^' => (true, &p[2..end]),
                _ => (false, &p[1..end]),
            };
            let mut found = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    found |= (class[i]..=class[i + 2]).contains(&c);
                    i += 3;
                } else {
                    found |= class[i] == c;
                    i += 1;
                }
            }
            found != negate && c != b'/' && glob_match(&p[end + 1..], &s[1..])
        }
        Some(&c) => s.first() == Some(&c) && glob_match(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(inc: &[&str], exc: &[&str]) -> Filter {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Filter::new(&v(inc), &v(exc))
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"*.jpg", b"a.jpg"));
        assert!(!glob_match(b"*.jpg", b"d/a.jpg"));
        assert!(glob_match(b"**/*.jpg", b"d/e/a.jpg"));
        assert!(glob_match(b"**/*.jpg", b"a.jpg"));
        assert!(glob_match(b"logs/**", b"logs/x/y"));
        assert!(glob_match(b"f?.[ab]", b"f1.b"));
        assert!(!glob_match(b"f?.[!ab]", b"f1.b"));
        assert!(glob_match(b"[0-9]*", b"7up"));
    }

    #[test]
    fn include_and_exclude() {
        let all = f(&[], &[]);
        assert!(all.accepts("x/y.txt"));
        let some = f(&["*.jpg", "docs/**"], &["*.tmp", "docs/private/**"]);
        assert!(some.accepts("photos/a.jpg"));
        assert!(some.accepts("docs/readme.md"));
        assert!(!some.accepts("docs/private/key.pem"));
        assert!(!some.accepts("src/main.rs"));
        assert!(!f(&[], &["*.tmp"]).accepts("a/b.tmp"));
    }
}
