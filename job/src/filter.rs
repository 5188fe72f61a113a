//! Include/exclude filters on relative paths (`includeGlobs`,
//! `excludeGlobs`), matched by `globset`. A pattern without `/` is matched
//! against the file name, one with `/` against the whole relative path.
//! `*` and `?` do not cross `/`; `**` does; `[abc]`, `[a-z]`, `[!a]` are
//! character classes and `{a,b}` alternatives. Matching is linear in the
//! name: no pattern can make a listing slow.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// Decides which listed objects belong to the job.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    include: Patterns,
    exclude: Patterns,
}

/// Patterns split by what they are matched against.
#[derive(Clone, Debug, Default)]
struct Patterns {
    /// Without `/`: matched against the file name.
    names: Option<GlobSet>,
    /// With `/`: matched against the whole relative path.
    paths: Option<GlobSet>,
}

/// One pattern, compiled; the error says what is wrong with it.
pub fn compile(pattern: &str) -> Result<Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("bad glob pattern {pattern:?}: {}", e.kind()))
}

impl Patterns {
    fn new(patterns: &[String]) -> Result<Patterns, String> {
        let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        let (mut any_name, mut any_path) = (false, false);
        for p in patterns {
            let glob = compile(p)?;
            if p.contains('/') {
                paths.add(glob);
                any_path = true;
            } else {
                names.add(glob);
                any_name = true;
            }
        }
        let build = |b: GlobSetBuilder, any: bool| -> Result<Option<GlobSet>, String> {
            any.then(|| b.build().map_err(|e| e.to_string()))
                .transpose()
        };
        Ok(Patterns {
            names: build(names, any_name)?,
            paths: build(paths, any_path)?,
        })
    }

    fn is_empty(&self) -> bool {
        self.names.is_none() && self.paths.is_none()
    }

    fn hit(&self, rel_path: &str, name: &str) -> bool {
        self.names.as_ref().is_some_and(|s| s.is_match(name))
            || self.paths.as_ref().is_some_and(|s| s.is_match(rel_path))
    }
}

impl Filter {
    /// The filter of a job; a pattern that is not a valid glob is an error
    /// naming it (the configuration parser reports it with `FILE:LINE`).
    pub fn new(include: &[String], exclude: &[String]) -> Result<Filter, String> {
        Ok(Filter {
            include: Patterns::new(include)?,
            exclude: Patterns::new(exclude)?,
        })
    }

    /// True when the path is included (no include patterns = everything)
    /// and not excluded.
    pub fn accepts(&self, rel_path: &str) -> bool {
        let name = rel_path.rsplit('/').next().unwrap_or(rel_path);
        (self.include.is_empty() || self.include.hit(rel_path, name))
            && !self.exclude.hit(rel_path, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(inc: &[&str], exc: &[&str]) -> Filter {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Filter::new(&v(inc), &v(exc)).unwrap()
    }

    #[test]
    fn globs() {
        let m = |p: &str, s: &str| compile(p).unwrap().compile_matcher().is_match(s);
        assert!(m("*.jpg", "a.jpg"));
        assert!(!m("*.jpg", "d/a.jpg"));
        assert!(m("**/*.jpg", "d/e/a.jpg"));
        assert!(m("**/*.jpg", "a.jpg"));
        assert!(m("logs/**", "logs/x/y"));
        assert!(m("f?.[ab]", "f1.b"));
        assert!(!m("f?.[!ab]", "f1.b"));
        assert!(m("[0-9]*", "7up"));
        assert!(m("*.{jpg,png}", "a.png"));
        // A pattern built to backtrack still answers at once.
        let long = "a".repeat(4096);
        assert!(!m("*a*a*a*a*a*a*a*a*a*a*a*a*b", &long));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        let err = Filter::new(&["[a-".into()], &[]).unwrap_err();
        assert!(err.starts_with("bad glob pattern \"[a-\": "), "{err}");
        assert!(Filter::new(&[], &["{a,b".into()]).is_err());
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
