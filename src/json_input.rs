//! Parsing the JSON objects callers pass in (bus options, query filters, subscribe options): one
//! place for "must be an object" and for messages that name the offending field.

use serde::de::DeserializeOwned;

/// serde_json appends "at line 1 column 17" to its messages; callers see field names instead.
pub(crate) fn describe_json_error(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// serde accepts a JSON array for a struct; callers' option objects must really be objects.
pub(crate) fn is_json_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// Parses `text` as the object called `what`. The error message names the field path, after
/// `field_prefix` (e.g. `"option "` gives `option batch.maxSize: …`).
pub(crate) fn parse_object<T: DeserializeOwned>(
    text: &str,
    what: &str,
    field_prefix: &str,
) -> Result<T, String> {
    if !is_json_object(text) {
        return Err(format!("{what} must be an object"));
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let msg = describe_json_error(e.inner());
        if path == "." {
            format!("{what}: {msg}")
        } else {
            format!("{field_prefix}{path}: {msg}")
        }
    })
}

/// A JS number that is a store-assigned id: a whole number from 1 to 2^53 - 1 (beyond that a JS
/// number no longer names one integer). `None` for anything else; callers word the error.
pub(crate) fn whole_number_id(id: f64) -> Option<u64> {
    (id >= 1.0 && id.fract() == 0.0 && id <= 9_007_199_254_740_991.0).then_some(id as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_number_ids_are_positive_safe_integers() {
        assert_eq!(whole_number_id(1.0), Some(1));
        assert_eq!(
            whole_number_id(9_007_199_254_740_991.0),
            Some(9_007_199_254_740_991)
        );
        for bad in [
            0.0,
            -1.0,
            1.5,
            f64::NAN,
            f64::INFINITY,
            9_007_199_254_740_992.0,
        ] {
            assert_eq!(whole_number_id(bad), None, "{bad}");
        }
    }
}
