//! Subscription patterns: `*` is exactly one segment, `**` (alias `#`) zero or more trailing segments.

use crate::error::{EventBusError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Tail,
}

/// A parsed pattern, matched against event types segment by segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    segments: Vec<Segment>,
}

/// A type segment: lowercase ASCII letter, then lowercase letters, digits or `_`.
pub(crate) fn is_type_segment(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

impl Pattern {
    /// Parses a pattern; `field` names it in errors (e.g. `pattern[1]`).
    pub(crate) fn parse(source: &str, field: &str) -> Result<Pattern> {
        let invalid = |why: &str| {
            EventBusError::InvalidEvent(format!("{field} {source:?} is not a valid pattern: {why}"))
        };
        if source.is_empty() {
            return Err(invalid("it is empty"));
        }
        let parts: Vec<&str> = source.split('.').collect();
        let last = parts.len() - 1;
        let segments = parts
            .iter()
            .enumerate()
            .map(|(i, part)| match *part {
                "" => Err(invalid("it has an empty segment")),
                "*" => Ok(Segment::One),
                "**" | "#" if i == last => Ok(Segment::Tail),
                "**" | "#" => Err(invalid("`**` and `#` are only allowed as the last segment")),
                literal if is_type_segment(literal) => Ok(Segment::Literal(literal.to_string())),
                _ => Err(invalid(
                    "segments are `*`, `**`, `#` or lowercase ASCII words ([a-z][a-z0-9_]*)",
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Pattern {
            source: source.to_string(),
            segments,
        })
    }

    /// Parses a subscription's non-empty list; errors name `pattern` or `pattern[i]`.
    pub fn parse_all(sources: &[String]) -> Result<Vec<Pattern>> {
        if sources.is_empty() {
            return Err(EventBusError::InvalidEvent(
                "pattern must not be an empty list".into(),
            ));
        }
        sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let field = if sources.len() == 1 {
                    "pattern".to_string()
                } else {
                    format!("pattern[{i}]")
                };
                Pattern::parse(s, &field)
            })
            .collect()
    }

    pub(crate) fn matches(&self, event_type: &str) -> bool {
        let mut parts = event_type.split('.');
        for segment in &self.segments {
            match segment {
                Segment::Tail => return true,
                Segment::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(lit) => {
                    if parts.next() != Some(lit.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

impl Pattern {
    /// True when the pattern is a plain event type (no wildcard).
    pub(crate) fn exact(&self) -> Option<&str> {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
            .then_some(self.source.as_str())
    }

    /// The same matching as a POSIX/Rust regular expression, for stores that filter in SQL.
    /// Literal segments are `[a-z0-9_]` words, so only the dots need escaping.
    pub fn to_regex(&self) -> String {
        let mut re = String::from("^");
        for (i, segment) in self.segments.iter().enumerate() {
            match (segment, i) {
                (Segment::Tail, 0) => re.push_str(".*"),
                (Segment::Tail, _) => re.push_str(r"(\..+)?"),
                (other, i) => {
                    if i > 0 {
                        re.push_str(r"\.");
                    }
                    match other {
                        Segment::Literal(lit) => re.push_str(lit),
                        _ => re.push_str("[^.]+"),
                    }
                }
            }
        }
        re.push('$');
        re
    }
}

pub(crate) fn any_matches(patterns: &[Pattern], event_type: &str) -> bool {
    patterns.iter().any(|p| p.matches(event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, event_type: &str) -> bool {
        Pattern::parse(pattern, "pattern")
            .expect("valid pattern")
            .matches(event_type)
    }

    #[test]
    fn match_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("project.created", "project.created", true),
            ("project.created", "project.updated", false),
            ("project.created", "project.created.extra", false),
            ("project.*", "project.created", true),
            ("project.*", "project.a.b", false),
            ("project.*", "user.created", false),
            ("*.created", "user.created", true),
            ("*.created", "user.deleted", false),
            ("*.*", "a.b", true),
            ("*.*", "a.b.c", false),
            ("project.**", "project.created", true),
            ("project.**", "project.a.b", true),
            ("project.#", "project.a.b.c", true),
            ("project.**", "projects.created", false),
            ("project.**", "user.created", false),
            ("**", "anything.at.all", true),
            ("#", "a.b", true),
            ("a.*.**", "a.b", true),
            ("a.*.**", "a", false),
            ("menu.item_updated", "menu.item_updated", true),
            ("v2.*", "v2.x", true),
        ];
        for (pattern, event_type, expected) in cases {
            assert_eq!(
                m(pattern, event_type),
                *expected,
                "{pattern} vs {event_type}"
            );
        }
    }

    #[test]
    fn regex_form_agrees_with_matches() {
        let patterns = [
            "project.created",
            "project.*",
            "*.created",
            "project.**",
            "**",
            "#",
            "a.*.**",
            "*.*",
        ];
        let types = [
            "project.created",
            "project.updated",
            "project.a.b",
            "user.created",
            "a.b",
            "a.b.c",
            "a.b.c.d",
            "projects.x",
        ];
        for p in patterns {
            let pattern = Pattern::parse(p, "pattern").expect("valid");
            let re = regex::Regex::new(&pattern.to_regex()).expect("regex compiles");
            for t in types {
                assert_eq!(
                    re.is_match(t),
                    pattern.matches(t),
                    "{p} ({}) vs {t}",
                    pattern.to_regex()
                );
            }
        }
        assert_eq!(
            Pattern::parse("a.b", "p").expect("valid").exact(),
            Some("a.b")
        );
        assert_eq!(Pattern::parse("a.*", "p").expect("valid").exact(), None);
    }

    #[test]
    fn tail_matches_zero_segments_when_prefix_is_whole_type() {
        // `project.created.**` covers the type itself as well as deeper ones.
        assert!(m("project.created.**", "project.created"));
        assert!(m("project.created.**", "project.created.v2"));
    }

    #[test]
    fn invalid_patterns_are_rejected_with_the_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("project..created", "empty segment"),
            (".project", "empty segment"),
            ("project.", "empty segment"),
            ("project.**.created", "last segment"),
            ("#.created", "last segment"),
            ("Project.created", "lowercase"),
            ("projet.créé", "lowercase"),
            ("项目.created", "lowercase"),
            ("project.cre*", "lowercase"),
            ("project.***", "lowercase"),
            ("project created", "lowercase"),
        ];
        for (pattern, why) in cases {
            let err = Pattern::parse(pattern, "pattern").expect_err(pattern);
            assert_eq!(err.code(), "INVALID_EVENT");
            assert!(err.to_string().contains(why), "{pattern}: {err}");
        }
    }

    #[test]
    fn list_errors_name_the_index() {
        let err = Pattern::parse_all(&["a.b".into(), "a..b".into()]).unwrap_err();
        assert!(err.to_string().starts_with("pattern[1] "), "{err}");
        assert!(Pattern::parse_all(&[]).is_err());
    }
}
