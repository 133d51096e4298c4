//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, the
//! key being the base64-decoded secret after `whsec_`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::error::{EventBusError, Result};

const PREFIX: &str = "whsec_";

/// The `webhook-id` header of a delivery: `msg_<event id>_<delivery id>`. The same on every
/// attempt and replay (receivers deduplicate by it), and distinct per endpoint. Delivery records
/// show it through this function too, so what an operator reads is what the receiver got.
pub fn message_id(event_id: Uuid, delivery_id: u64) -> String {
    format!("msg_{}_{delivery_id}", event_id.simple())
}

/// A new secret: `whsec_` + base64 of 32 random bytes.
pub(crate) fn generate_secret() -> Result<String> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| {
        EventBusError::StoreUnavailable(format!("no randomness for a webhook secret: {e}"))
    })?;
    Ok(format!("{PREFIX}{}", STANDARD.encode(key)))
}

/// The key bytes of a `whsec_…` secret; None when it is not one.
fn key_of(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix(PREFIX)?).ok()
}

/// Checks a caller-given secret: `whsec_` + base64 of 24 to 64 bytes.
pub(crate) fn check_secret(secret: &str) -> Result<()> {
    match key_of(secret) {
        Some(key) if (24..=64).contains(&key.len()) => Ok(()),
        _ => Err(EventBusError::InvalidEvent(
            "secret must be \"whsec_\" followed by base64 of 24 to 64 bytes".into(),
        )),
    }
}

/// The `webhook-signature` header: one `v1,` signature per secret, space-separated.
pub(crate) fn signature_header(secrets: &[String], id: &str, timestamp: i64, body: &str) -> String {
    secrets
        .iter()
        .filter_map(|secret| {
            let key = key_of(secret)?;
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body.as_bytes());
            Some(format!(
                "v1,{}",
                STANDARD.encode(mac.finalize().into_bytes())
            ))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_standard_webhooks_reference() {
        // The example from the Standard Webhooks specification's reference tests.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string();
        let header = signature_header(
            &[secret],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn the_message_id_names_the_event_and_the_delivery() {
        let event = Uuid::try_parse("01890a5d-ac96-774b-bcce-b302099a8057").unwrap();
        assert_eq!(
            message_id(event, 42),
            "msg_01890a5dac96774bbcceb302099a8057_42"
        );
    }

    #[test]
    fn two_secrets_give_two_signatures() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        let header = signature_header(&[a.clone(), b], "msg_1", 1, "{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature_header(&[a], "msg_1", 1, "{}"));
    }

    #[test]
    fn secrets_are_checked() {
        let s = generate_secret().unwrap();
        assert!(s.starts_with("whsec_"));
        check_secret(&s).unwrap();
        for bad in ["secret", "whsec_", "whsec_not base64!", "whsec_AAAA"] {
            assert_eq!(
                check_secret(bad).unwrap_err().code(),
                "INVALID_EVENT",
                "{bad}"
            );
        }
    }
}
