#![allow(clippy::unwrap_used, clippy::panic)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::Value;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::config::*;
use super::inject::*;
use super::record::*;
use super::refresh::*;
use super::request::*;
use super::response::*;
use crate::backoff::SaltedRng;
use crate::config_error::FieldError;
use crate::secret::Secret;
use crate::ws::{Direction, Event, FrameParser, Limits};

const NOW: u64 = 1_700_000_000_000;

fn raw(json: &str) -> RawToken {
    serde_json::from_str(json).unwrap()
}

fn config_from(json: &str) -> Result<TokenConfig, Vec<FieldError>> {
    let mut errors = Vec::new();
    let config = token_config(Some(raw(json)), false, "access_token", 250, &mut errors);
    match config {
        Some(config) if errors.is_empty() => Ok(config),
        _ => Err(errors),
    }
}

fn config() -> TokenConfig {
    config_from(
        r#"{"cluster":"idp","client_id":"switchboard","client_secret":"s3cret",
            "scopes":["websocket:read","presence:read"],"safety_buffer":"30s","clock_skew":"5s"}"#,
    )
    .unwrap()
}

fn answer(json: &str) -> Result<Issued, FetchError> {
    parse_response(Some(200), json.as_bytes(), NOW, &config())
}

fn jwt_with_exp(exp: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"x","exp":{exp}}}"#));
    format!("{header}.{payload}.c2lnbmF0dXJl")
}

#[test]
fn defaults_and_validation() {
    let c = config();
    assert_eq!(c.refresh_fraction, 0.85);
    assert_eq!(c.injection, Injection::Header);
    assert_eq!(c.grant, Grant::ClientCredentials);
    assert_eq!(c.authority, "idp");
    assert_eq!(c.path, "/oauth/token");
    assert!(format!("{c:?}").contains("<redacted>"));
    assert!(!format!("{c:?}").contains("s3cret"));
    assert_eq!(
        c.rotation.as_ref().unwrap().target_scope,
        "websocket:read presence:read"
    );

    let bad = |json: &str, path: &str| {
        let errors = config_from(json).unwrap_err();
        assert!(
            errors.iter().any(|e| e.path == path),
            "{json}: {errors:?} should name {path}"
        );
    };
    bad(r#"{"client_id":"a","client_secret":"b"}"#, "token.cluster");
    bad(
        r#"{"cluster":"idp","client_secret":"b"}"#,
        "token.client_id",
    );
    bad(
        r#"{"cluster":"idp","client_id":"a"}"#,
        "token.client_secret",
    );
    bad(
        r#"{"cluster":"idp","client_id":"a","grant":"refresh_token"}"#,
        "token.refresh_token",
    );
    bad(
        r#"{"cluster":"idp","client_id":"a","client_secret":"b","grant":"password"}"#,
        "token.grant",
    );
    bad(
        r#"{"cluster":"idp","client_id":"a","client_secret":"b","refresh_at":0.99}"#,
        "token.refresh_at",
    );
    bad(
        r#"{"cluster":"idp","client_id":"a","client_secret":"b","scopes":["a b"]}"#,
        "token.scopes[0]",
    );
    bad(
        r#"{"cluster":"idp","client_id":"a","client_secret":"b","inject":"cookie"}"#,
        "token.inject",
    );
    bad(
        r#"{"cluster":"idp","client_id":"a","client_secret":"b","lease":"100ms"}"#,
        "token.lease",
    );
    bad(
        r#"{"cluster":"idp","client_id":"a","client_secret":"b","backoff":{"base":"2m","cap":"1m"}}"#,
        "token.backoff.base",
    );
    let mut errors = Vec::new();
    assert!(token_config(
        Some(raw(r#"{"enabled":false}"#)),
        false,
        "access_token",
        250,
        &mut errors
    )
    .is_none());
    assert!(errors.is_empty());
    let query = token_config(
        Some(raw(
            r#"{"cluster":"idp","client_id":"a","client_secret":"b"}"#,
        )),
        true,
        "access_token",
        250,
        &mut errors,
    )
    .unwrap();
    assert_eq!(query.injection, Injection::Query("access_token".into()));
}

#[test]
fn fingerprint_follows_request_settings() {
    let a = config();
    let b = config_from(
        r#"{"cluster":"idp","client_id":"switchboard","client_secret":"other",
            "scopes":["websocket:read","presence:read"],"safety_buffer":"30s","clock_skew":"5s"}"#,
    )
    .unwrap();
    assert_ne!(a.fingerprint, b.fingerprint);
    assert_eq!(a.fingerprint, config().fingerprint);
}

#[test]
fn client_credentials_request_with_basic_auth() {
    let request = build_request(&config(), None);
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(header(":method"), "POST");
    assert_eq!(header(":path"), "/oauth/token");
    assert_eq!(header(":authority"), "idp");
    assert_eq!(
        header("authorization"),
        format!("Basic {}", STANDARD.encode("switchboard:s3cret"))
    );
    assert_eq!(
        String::from_utf8(request.body).unwrap(),
        "grant_type=client_credentials&scope=websocket%3Aread+presence%3Aread"
    );
}

#[test]
fn refresh_grant_with_post_auth_uses_the_current_chain_link() {
    let config = config_from(
        r#"{"cluster":"idp","client_id":"sb","client_secret":"p&w","grant":"refresh_token",
            "refresh_token":"first","client_auth":"post","audience":"https://api","scopes":["a"]}"#,
    )
    .unwrap();
    let body = |rt: Option<&str>| String::from_utf8(build_request(&config, rt).body).unwrap();
    assert_eq!(
        body(None),
        "grant_type=refresh_token&refresh_token=first&audience=https%3A%2F%2Fapi&client_id=sb&client_secret=p%26w"
    );
    assert!(body(Some("second")).contains("refresh_token=second"));
    assert!(!build_request(&config, None)
        .headers
        .iter()
        .any(|(n, _)| n == "authorization"));
}

#[test]
fn a_good_answer_is_scheduled_at_the_fraction() {
    let issued = answer(
        r#"{"access_token":"abc.DEF-123","token_type":"bearer","expires_in":3600,"refresh_token":"r2"}"#,
    )
    .unwrap();
    assert_eq!(issued.access_token, "abc.DEF-123");
    assert_eq!(issued.token_type, "Bearer");
    assert_eq!(issued.expires_at_ms, NOW + 3_600_000);
    assert_eq!(issued.refresh_at_ms, NOW + 3_060_000);
    assert_eq!(issued.refresh_token.as_deref(), Some("r2"));
}

#[test]
fn short_tokens_refresh_before_the_safety_buffer() {
    // 40 s lifetime, 30 s buffer, 5 s timeout: the 85% point (34 s) is too late.
    let issued = answer(r#"{"access_token":"t","token_type":"Bearer","expires_in":40}"#).unwrap();
    assert_eq!(issued.refresh_at_ms, NOW + 5_000);
}

#[test]
fn the_earlier_of_expires_in_and_jwt_exp_wins() {
    let exp = NOW / 1000 + 1_800;
    let token = jwt_with_exp(exp);
    let issued = answer(&format!(
        r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":3600}}"#
    ))
    .unwrap();
    // exp less the 5 s clock skew.
    assert_eq!(issued.expires_at_ms, exp * 1000 - 5_000);
    let later = jwt_with_exp(NOW / 1000 + 7_200);
    let issued = answer(&format!(
        r#"{{"access_token":"{later}","token_type":"Bearer","expires_in":3600}}"#
    ))
    .unwrap();
    assert_eq!(issued.expires_at_ms, NOW + 3_600_000);
    // No expires_in: the JWT alone decides.
    let issued = answer(&format!(
        r#"{{"access_token":"{token}","token_type":"Bearer"}}"#
    ))
    .unwrap();
    assert_eq!(issued.expires_at_ms, exp * 1000 - 5_000);
    assert_eq!(jwt_exp_secs("not-a-jwt"), None);
    assert_eq!(jwt_exp_secs("a.!!!.c"), None);
    assert_eq!(jwt_exp_secs("a.b.c.d"), None);
}

#[test]
fn every_failure_is_classified() {
    let c = config();
    let at = |status: Option<u16>, body: &str| parse_response(status, body.as_bytes(), NOW, &c);
    assert_eq!(at(None, ""), Err(FetchError::Connect));
    assert_eq!(
        at(
            Some(503),
            "upstream connect error or disconnect/reset before headers"
        ),
        Err(FetchError::Connect)
    );
    assert_eq!(at(Some(503), "busy"), Err(FetchError::Status(503)));
    assert_eq!(
        at(Some(504), "upstream request timeout"),
        Err(FetchError::Timeout)
    );
    assert_eq!(at(Some(500), "oops"), Err(FetchError::Status(500)));
    assert_eq!(
        at(Some(400), r#"{"error":"invalid_grant"}"#),
        Err(FetchError::InvalidGrant)
    );
    assert_eq!(
        at(Some(401), r#"{"error":"invalid_client"}"#),
        Err(FetchError::InvalidClient)
    );
    assert_eq!(at(Some(200), "<html>"), Err(FetchError::NotJson));
    assert_eq!(at(Some(200), "[1]"), Err(FetchError::NotJson));
    assert_eq!(
        at(Some(200), r#"{"token_type":"Bearer","expires_in":60}"#),
        Err(FetchError::MissingField("access_token"))
    );
    assert_eq!(
        at(Some(200), r#"{"access_token":"a","expires_in":60}"#),
        Err(FetchError::MissingField("token_type"))
    );
    assert_eq!(
        at(Some(200), r#"{"access_token":"a","token_type":"Bearer"}"#),
        Err(FetchError::MissingField("expires_in"))
    );
    assert_eq!(
        at(
            Some(200),
            r#"{"access_token":"a","token_type":"mac","expires_in":60}"#
        ),
        Err(FetchError::UnsupportedTokenType)
    );
    assert_eq!(
        at(
            Some(200),
            r#"{"access_token":"a b","token_type":"Bearer","expires_in":60}"#
        ),
        Err(FetchError::BadToken)
    );
    assert_eq!(
        at(
            Some(200),
            "{\"access_token\":\"a\\r\\nx: y\",\"token_type\":\"Bearer\",\"expires_in\":60}"
        ),
        Err(FetchError::BadToken)
    );
    for lifetime in ["0", "10", "99999999", "-5", "1e400"] {
        let result = at(
            Some(200),
            &format!(r#"{{"access_token":"a","token_type":"Bearer","expires_in":{lifetime}}}"#),
        );
        assert!(result.is_err(), "{lifetime}: {result:?}");
    }
    let long = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(
        at(
            Some(200),
            &format!(r#"{{"access_token":"{long}","token_type":"Bearer","expires_in":60}}"#)
        ),
        Err(FetchError::BadToken)
    );
    assert!(FetchError::InvalidGrant.needs_operator());
    assert!(!FetchError::Timeout.needs_operator());
    assert_eq!(FetchError::Status(502).label(), "http_5xx");
}

#[test]
fn one_leader_at_a_time_and_the_lease_lapses() {
    let c = config();
    let first = plan_tick(None, 11, NOW, &c);
    assert!(first.leader);
    let record = first.write.unwrap();
    assert_eq!(record.leader, 11);
    assert!(first.fetch.is_some(), "no token yet: fetch");
    // Another worker sees a live lease: nothing to do.
    let other = plan_tick(Some(&record), 22, NOW + 1_000, &c);
    assert!(!other.leader && other.write.is_none() && other.fetch.is_none());
    // The leader renews and does not fetch twice while the first is in flight.
    let renewed = plan_tick(Some(&record), 11, NOW + 1_000, &c);
    assert!(renewed.leader && renewed.fetch.is_none());
    // The leader stops ticking: after the lease, the other takes over (and, the fetch having
    // timed out, fetches).
    let later = NOW + c.lease_ms + c.timeout_ms + c.lease_ms + 1;
    let takeover = plan_tick(Some(&record), 22, later, &c);
    assert!(takeover.leader);
    assert_eq!(takeover.write.as_ref().unwrap().leader, 22);
    assert!(takeover.fetch.is_some());
}

fn issued(lifetime_s: u64, refresh_token: Option<&str>) -> Issued {
    let c = config();
    let expires_at_ms = NOW + lifetime_s * 1000;
    Issued {
        access_token: "tok".into(),
        token_type: "Bearer".into(),
        expires_in_secs: lifetime_s,
        issued_at_ms: NOW,
        expires_at_ms,
        refresh_at_ms: super::response::refresh_at(NOW, expires_at_ms, &c),
        refresh_token: refresh_token.map(str::to_string),
    }
}

#[test]
fn a_stored_token_bumps_the_generation_and_waits_for_its_refresh_point() {
    let c = config();
    let mut rng = SaltedRng::new(1);
    let plan = plan_tick(None, 1, NOW, &c);
    let record = plan.write.unwrap();
    let (record, applied) = apply_result(
        Some(&record),
        plan.fetch.unwrap().generation,
        Ok(issued(3600, Some("r2"))),
        NOW,
        &c,
        &mut rng,
    );
    assert_eq!(applied, Applied::Stored { generation: 1 });
    let token = record.token.clone().unwrap();
    assert_eq!(token.generation, 1);
    assert!(token.usable(NOW, c.safety_buffer_ms));
    assert!(!token.usable(NOW + 3_600_000 - c.safety_buffer_ms, c.safety_buffer_ms));
    assert_eq!(record.in_flight_until_ms, 0);
    assert!(plan_tick(Some(&record), 1, NOW + 1_000, &c).fetch.is_none());
    assert!(plan_tick(Some(&record), 1, token.refresh_at_ms, &c)
        .fetch
        .is_some());
    // An answer to a plan made before this token was stored is stale.
    let (_, stale) = apply_result(Some(&record), 0, Ok(issued(60, None)), NOW, &c, &mut rng);
    assert_eq!(stale, Applied::Stale);
}

#[test]
fn refresh_tokens_rotate() {
    let c = config_from(
        r#"{"cluster":"idp","client_id":"sb","grant":"refresh_token","refresh_token":"r1","safety_buffer":"30s"}"#,
    )
    .unwrap();
    let mut rng = SaltedRng::new(1);
    let plan = plan_tick(None, 1, NOW, &c);
    assert_eq!(
        plan.fetch.as_ref().unwrap().refresh_token.as_deref(),
        Some("r1")
    );
    let (record, _) = apply_result(
        plan.write.as_ref(),
        0,
        Ok(issued(600, Some("r2"))),
        NOW,
        &c,
        &mut rng,
    );
    let due = record.token.as_ref().unwrap().refresh_at_ms;
    let plan = plan_tick(Some(&record), 1, due, &c);
    assert_eq!(plan.fetch.unwrap().refresh_token.as_deref(), Some("r2"));
}

#[test]
fn failures_back_off_with_jitter_and_keep_the_valid_token() {
    let c = config();
    let mut rng = SaltedRng::new(9);
    let plan = plan_tick(None, 1, NOW, &c);
    let (record, _) = apply_result(
        plan.write.as_ref(),
        0,
        Ok(issued(3600, None)),
        NOW,
        &c,
        &mut rng,
    );
    let mut record = record;
    let mut now = record.token.as_ref().unwrap().refresh_at_ms;
    let mut delays = Vec::new();
    for _ in 0..8 {
        let plan = plan_tick(Some(&record), 1, now, &c);
        let Some(fetch) = plan.fetch else {
            now += 100;
            continue;
        };
        let (next, applied) = apply_result(
            plan.write.as_ref(),
            fetch.generation,
            Err(FetchError::Status(500)),
            now,
            &c,
            &mut rng,
        );
        let Applied::Failed { retry_in_ms, .. } = applied else {
            panic!("{applied:?}")
        };
        assert!(retry_in_ms <= c.backoff.cap_ms);
        delays.push(retry_in_ms);
        assert!(next.token.is_some(), "the still-valid token stays");
        assert!(
            plan_tick(Some(&next), 1, now + retry_in_ms - 1, &c)
                .fetch
                .is_none()
                || retry_in_ms == 0
        );
        now = next.next_attempt_ms;
        record = next;
    }
    assert_eq!(record.failures, 8);
    assert_eq!(record.last_error.as_deref(), Some("http_5xx"));
    // Capped: the later draws are bounded by the cap, and they are not all equal.
    assert!(delays.windows(2).any(|w| w[0] != w[1]));
    let (slow, applied) = apply_result(
        Some(&record),
        record.generation,
        Err(FetchError::InvalidGrant),
        now,
        &c,
        &mut rng,
    );
    assert_eq!(
        applied,
        Applied::Failed {
            error: FetchError::InvalidGrant,
            retry_in_ms: c.backoff.slow_ms
        }
    );
    assert_eq!(slow.next_attempt_ms, now + c.backoff.slow_ms);
}

#[test]
fn a_changed_configuration_refetches_and_drops_the_old_chain() {
    let c = config();
    let mut rng = SaltedRng::new(1);
    let plan = plan_tick(None, 1, NOW, &c);
    let (mut record, _) = apply_result(
        plan.write.as_ref(),
        0,
        Ok(issued(3600, Some("r"))),
        NOW,
        &c,
        &mut rng,
    );
    record.fingerprint ^= 1;
    let plan = plan_tick(Some(&record), 1, NOW + 1_000, &c);
    assert!(plan.fetch.is_some());
    let written = plan.write.unwrap();
    assert_eq!(written.refresh_token, None);
    assert!(written.token.is_some());
}

#[test]
fn the_record_round_trips_and_rejects_garbage() {
    let c = config();
    let record = plan_tick(None, 5, NOW, &c).write.unwrap();
    assert_eq!(TokenRecord::decode(&record.encode()), Some(record));
    assert_eq!(TokenRecord::decode(b"{nope"), None);
    assert_eq!(TokenRecord::decode(&vec![b' '; 40_000]), None);
}

fn token() -> SharedToken {
    SharedToken {
        generation: 3,
        access_token: "a+b/c=".into(),
        token_type: "Bearer".into(),
        expires_in_secs: 3600,
        issued_at_ms: 1_705_329_120_000,
        expires_at_ms: 1_705_332_720_000,
        refresh_at_ms: 1_705_332_180_000,
    }
}

#[test]
fn injection_replaces_what_the_client_sent() {
    assert_eq!(
        inject(&Injection::Header, &token(), "/ws"),
        UpgradeInjection::Header("Bearer a+b/c=".into())
    );
    let query = Injection::Query("access_token".into());
    assert_eq!(
        inject(
            &query,
            &token(),
            "/ws?access_token=mine&x=1&access_token=again"
        ),
        UpgradeInjection::Path("/ws?x=1&access_token=a%2Bb%2Fc%3D".into())
    );
    assert_eq!(set_query_param("/ws", "t", "v"), "/ws?t=v");
    assert_eq!(set_query_param("/ws?", "t", "v"), "/ws?t=v");
    assert_eq!(set_query_param("/ws?a&b=2", "t", "v"), "/ws?a&b=2&t=v");
}

#[test]
fn timestamps_are_rfc3339() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_705_329_120_000), "2024-01-15T14:32:00Z");
    assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(4_102_444_799_000), "2099-12-31T23:59:59Z");
}

#[test]
fn the_auth_refresh_frame_is_one_masked_text_frame() {
    let rotation = Rotation {
        frame_type: "auth_refresh".into(),
        target_scope: "websocket:read".into(),
        region: Some("eu-west-1".into()),
    };
    let context = FrameContext {
        session_id: "sb-0011",
        region: None,
    };
    let frame = auth_refresh_frame(&rotation, &token(), &context, [1, 2, 3, 4]);
    let limits = Limits {
        max_frame_payload: 1 << 20,
        max_message: 1 << 20,
        validate_utf8: true,
        extensions_negotiated: false,
    };
    let mut parser =
        FrameParser::new(Direction::ClientToServer, limits).with_capture(crate::ws::Capture::TEXT);
    let mut events = Vec::new();
    parser.feed(&frame, &mut events).unwrap();
    let message = events
        .iter()
        .find_map(|e| match e {
            Event::Message(m) => Some(m.data.clone()),
            _ => None,
        })
        .unwrap();
    let json: Value = serde_json::from_slice(&message).unwrap();
    assert_eq!(json["frame_type"], "auth_refresh");
    assert_eq!(json["target_scope"], "websocket:read");
    assert_eq!(json["token_payload"]["access_token"], "a+b/c=");
    assert_eq!(json["token_payload"]["token_type"], "Bearer");
    assert_eq!(json["token_payload"]["expires_in"], 3600);
    assert_eq!(json["token_payload"]["issued_at"], "2024-01-15T14:32:00Z");
    assert_eq!(json["proxy_metadata"]["session_id"], "sb-0011");
    assert_eq!(json["proxy_metadata"]["region"], "eu-west-1");
    assert!(json["token_payload"].get("refresh_token").is_none());
    let _ = Secret::new("unused");
}
