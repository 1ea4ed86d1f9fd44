//! Fixed test vectors and helpers for the identity tests. The keys and tokens were generated
//! once, natively, with jwt-simple 0.15 (pure-rust); the private keys were then discarded. The
//! tokens carry `iat` = `nbf` = 1700000000, `iss` = `https://idp.test`, `aud` = `switchboard`,
//! `sub` = `agent-7`, `tenant` = `acme`, `region` = `eu-west`, and `exp` = 4102444800 (or
//! [`SOON_EXP`] for the `_SOON` ones). Fixed vectors keep the tests exact, fast, and runnable on
//! wasm32-unknown-unknown, where key generation has no randomness source.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::jwt::{ClaimNames, VerifyPolicy};
use super::keys::RawKey;

/// A moment inside every fixture token's validity window (2027-01-15).
pub const NOW: u64 = 1_800_000_000;
/// `iat` and `nbf` of every fixture token.
pub const ISSUED_AT: u64 = 1_700_000_000;
/// `exp` of the long-lived fixture tokens.
pub const FAR_EXP: u64 = 4_102_444_800;
/// `exp` of the `_SOON` fixture tokens.
pub const SOON_EXP: u64 = 1_700_003_600;
pub const ISSUER: &str = "https://idp.test";
pub const AUDIENCE: &str = "switchboard";

pub const ED1_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA/RAZBKuYzh8Yp14zqi3/x1+1NzsIo7hDcnaPAK77iQs=\n-----END PUBLIC KEY-----\n";
pub const ED1_PUBLIC_RAW_B64: &str = "/RAZBKuYzh8Yp14zqi3/x1+1NzsIo7hDcnaPAK77iQs=";
pub const ED1_PUBLIC_X: &str = "_RAZBKuYzh8Yp14zqi3_x1-1NzsIo7hDcnaPAK77iQs";
pub const ED2_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEACiaAWpip3iSIwam6iRlJApgtM0KH3uRb/DUXBCG9Bew=\n-----END PUBLIC KEY-----\n";
pub const RS_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsNQhYvu/DYcJpew3bqb9\nWlx2BInBfLBLqUGG+XFRwdp/TfBs/WjqGp7p3l9YbEc2niLg5i9pIusbc16Q7H01\nvGeFLGCgoTWN4e3SuVzPhUgl2daYnugQiQX7oZUeAP7EqflFwyPWqu3eOEBFMTSq\n39tx0ldqXs3AjFS3ziKLp/E1uocucpinOBO1Q5foI0aLx2v9g6we/klwrC/wYhxK\niVdxqdb+kMUp3Ei0IwrGYat0XkrJziVMB/iuBfndgwiM5vCHLh3Da2QmDs+ReJxc\nuREsXLuwQN4t/eqW7Xg/qCzPN997olZ/uDQIJSh1GtvX28Y8T/l+tcVDsAKrmbxu\nGQIDAQAB\n-----END PUBLIC KEY-----\n";
pub const RS_PUBLIC_DER_B64: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsNQhYvu/DYcJpew3bqb9Wlx2BInBfLBLqUGG+XFRwdp/TfBs/WjqGp7p3l9YbEc2niLg5i9pIusbc16Q7H01vGeFLGCgoTWN4e3SuVzPhUgl2daYnugQiQX7oZUeAP7EqflFwyPWqu3eOEBFMTSq39tx0ldqXs3AjFS3ziKLp/E1uocucpinOBO1Q5foI0aLx2v9g6we/klwrC/wYhxKiVdxqdb+kMUp3Ei0IwrGYat0XkrJziVMB/iuBfndgwiM5vCHLh3Da2QmDs+ReJxcuREsXLuwQN4t/eqW7Xg/qCzPN997olZ/uDQIJSh1GtvX28Y8T/l+tcVDsAKrmbxuGQIDAQAB";
pub const RS_PUBLIC_N: &str = "sNQhYvu_DYcJpew3bqb9Wlx2BInBfLBLqUGG-XFRwdp_TfBs_WjqGp7p3l9YbEc2niLg5i9pIusbc16Q7H01vGeFLGCgoTWN4e3SuVzPhUgl2daYnugQiQX7oZUeAP7EqflFwyPWqu3eOEBFMTSq39tx0ldqXs3AjFS3ziKLp_E1uocucpinOBO1Q5foI0aLx2v9g6we_klwrC_wYhxKiVdxqdb-kMUp3Ei0IwrGYat0XkrJziVMB_iuBfndgwiM5vCHLh3Da2QmDs-ReJxcuREsXLuwQN4t_eqW7Xg_qCzPN997olZ_uDQIJSh1GtvX28Y8T_l-tcVDsAKrmbxuGQ";
pub const RS_PUBLIC_E: &str = "AQAB";
pub const ES_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEJjIH1W7hMPRrTYAwPG6i7+inytpD\nk8C0dl81AiovVdTrorMPciOi4ES3A9Y064/DBliHr5ytjIRkQbvAw0hdpw==\n-----END PUBLIC KEY-----\n";
pub const ES_PUBLIC_DER_B64: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEJjIH1W7hMPRrTYAwPG6i7+inytpDk8C0dl81AiovVdTrorMPciOi4ES3A9Y064/DBliHr5ytjIRkQbvAw0hdpw==";
pub const ES_PUBLIC_X: &str = "JjIH1W7hMPRrTYAwPG6i7-inytpDk8C0dl81AiovVdQ";
pub const ES_PUBLIC_Y: &str = "66KzD3IjouBEtwPWNOuPwwZYh6-crYyEZEG7wMNIXac";
pub const ED_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHJm033AzI3VUPzg807rd+PZkBIQfMGQ0/L/YSOXsWPr\n-----END PRIVATE KEY-----\n-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA/RKY23GK8FT6NjgYshxn701Tsgr8q7nK4JRsXKVCh+0=\n-----END PUBLIC KEY-----\n";
pub const TOKEN_EDDSA_ED2: &str = "eyJhbGciOiJFZERTQSIsImtpZCI6ImVkLTIiLCJ0eXAiOiJKV1QifQ.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6NDEwMjQ0NDgwMCwibmJmIjoxNzAwMDAwMDAwLCJpc3MiOiJodHRwczovL2lkcC50ZXN0Iiwic3ViIjoiYWdlbnQtNyIsImF1ZCI6InN3aXRjaGJvYXJkIiwicmVnaW9uIjoiZXUtd2VzdCIsInRlbmFudCI6ImFjbWUifQ.YEErMfvbAfVmDHYSHP2UR9EwvCItjTbdGid-EpvqEs-sQM0vsaReGG6Dp781vTiwwp5IGSJfr_jZx7TSoxO4CQ";
pub const TOKEN_EDDSA_ED1_NO_KID: &str = "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6NDEwMjQ0NDgwMCwibmJmIjoxNzAwMDAwMDAwLCJpc3MiOiJodHRwczovL2lkcC50ZXN0Iiwic3ViIjoiYWdlbnQtNyIsImF1ZCI6InN3aXRjaGJvYXJkIiwicmVnaW9uIjoiZXUtd2VzdCIsInRlbmFudCI6ImFjbWUifQ.xVzXuVlQFxSwCYbvX0Vpdh-LwE9Vw4JQJLVrYtMHhcNqPkDn8IB4jhUOrXmNLlPuYw11sFnORVY5beaQRj6YDA";
pub const TOKEN_EDDSA_ED1_SOON: &str = "eyJhbGciOiJFZERTQSIsImtpZCI6ImVkLTEiLCJ0eXAiOiJKV1QifQ.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwibmJmIjoxNzAwMDAwMDAwLCJpc3MiOiJodHRwczovL2lkcC50ZXN0Iiwic3ViIjoiYWdlbnQtNyIsImF1ZCI6InN3aXRjaGJvYXJkIiwicmVnaW9uIjoiZXUtd2VzdCIsInRlbmFudCI6ImFjbWUifQ.EH45dz_nFLs40Uje3_5Gw3e1YZyeqNnWeTXAfhGZL4VgeYsiJ24QBLwQWRapcR2Qwmb5sGt8BoESuzpkG9vPBQ";
pub const TOKEN_RS256: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzLTEiLCJ0eXAiOiJKV1QifQ.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6NDEwMjQ0NDgwMCwibmJmIjoxNzAwMDAwMDAwLCJpc3MiOiJodHRwczovL2lkcC50ZXN0Iiwic3ViIjoiYWdlbnQtNyIsImF1ZCI6InN3aXRjaGJvYXJkIiwicmVnaW9uIjoiZXUtd2VzdCIsInRlbmFudCI6ImFjbWUifQ.o2V9EgxCaric97U5p4VPp3pTckt-4eGdQAIN2bQqa7VsM1f-VoSZaD7WxOAWJrOlAVjFz5aA81NSOZzb44bRLJx9ki0ursZ8pzSjptjsbEN0deXW7ktyj_CceDL6VjTAuUSw7SLvihJdVUzQDydwd8uJn7W4QMXtvz4Gkm-nlSM4sjnLO2NwWZNsg-cf3Ydv30kkC-6WMKVazazVgsAuOXy4jmSsys27EoAYdzRcKE4yvIfDBp4PoqZfTIayFmPoTUU8Ou-Ymt1YSFCogRRRBFEXbDcjH7Yl3SZH27DqZDtJSxxRut8KAZIxwTx925T1BfNCqI7V4DBBb6N7WGYp1g";
pub const TOKEN_RS256_SOON: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzLTEiLCJ0eXAiOiJKV1QifQ.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwibmJmIjoxNzAwMDAwMDAwLCJpc3MiOiJodHRwczovL2lkcC50ZXN0Iiwic3ViIjoiYWdlbnQtNyIsImF1ZCI6InN3aXRjaGJvYXJkIiwicmVnaW9uIjoiZXUtd2VzdCIsInRlbmFudCI6ImFjbWUifQ.c9c12iGuVObYmqPZ8rXbaktfv9qm4e3hPkj2KZf7Jp9Wh0Hj6IVmIGho47LfVUo8CxiWOjkB2B-bj5S27UXJ8TdVFtko_Rb6eyP4BTSVBbYB5YT4R0ACVzrqjxGCTheQm1jG82dxvq9Jc-nd2pAZSfHrrfLCjeQU9F0tfY0jadg2ewmsGV1r072-J9hrxA5CPI3yDsT7xX3e3Gj8fR7a6AmyQyDJetGBq6cJYu2DPpYm9N3xmEC1DrW0vYcsppjzbYcGLwHEV9ZCpY8jIS3enJZwbGG1SQOOWm98QwoIhvzzkEQESNUw2Vj77pRTTwFrggb6dhMomrxBPjfxrLjnbw";
pub const TOKEN_ES256: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImVzLTEiLCJ0eXAiOiJKV1QifQ.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6NDEwMjQ0NDgwMCwibmJmIjoxNzAwMDAwMDAwLCJpc3MiOiJodHRwczovL2lkcC50ZXN0Iiwic3ViIjoiYWdlbnQtNyIsImF1ZCI6InN3aXRjaGJvYXJkIiwicmVnaW9uIjoiZXUtd2VzdCIsInRlbmFudCI6ImFjbWUifQ.jVXvV345DBSbqP3ECjLvR65X48f--aZcrKEXaf6SeC90aAh1dMgF3bYRCfjDtFd_mat31dweCVcK_9vZkFJLyw";
pub const TOKEN_ES256_SOON: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImVzLTEiLCJ0eXAiOiJKV1QifQ.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwibmJmIjoxNzAwMDAwMDAwLCJpc3MiOiJodHRwczovL2lkcC50ZXN0Iiwic3ViIjoiYWdlbnQtNyIsImF1ZCI6InN3aXRjaGJvYXJkIiwicmVnaW9uIjoiZXUtd2VzdCIsInRlbmFudCI6ImFjbWUifQ.8qzajQH3Al9v0uC0gqoaY9if8017U6dZpx9RJhQpKz6iStJrEQPz9s-0yo5XtmtBhS4Cj2bFPVilV0aHbtZK_A";
pub const HS_SECRET_B64: &str = "CzBVep/E6Q4zWH2ix+wRNluApcrvFDleg6jN8hc8YYY=";
pub const TOKEN_HS256: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzLTEiLCJ0eXAiOiJKV1QifQ.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6NDEwMjQ0NDgwMCwibmJmIjoxNzAwMDAwMDAwLCJpc3MiOiJodHRwczovL2lkcC50ZXN0Iiwic3ViIjoiYWdlbnQtNyIsImF1ZCI6InN3aXRjaGJvYXJkIiwicmVnaW9uIjoiZXUtd2VzdCIsInRlbmFudCI6ImFjbWUifQ.qY2bIkItxjRev9Xhy2gxxmLM4_RziVqksv5nkDgH8LM";

/// A 32-byte block of arbitrary bytes, not a real key.
pub const OTHER_SECRET_B64: &str = "c3dpdGNoYm9hcmQtdGVzdC1vdGhlci1zZWNyZXQtMzI=";

pub fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn hs_secret() -> Vec<u8> {
    STANDARD.decode(HS_SECRET_B64).unwrap()
}

/// RFC 2104 HMAC-SHA-256, so tests can sign any header and payload bytes, on any target.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&inner_pad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer_pad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// A compact JWS over the given header and payload JSON, HMAC-SHA-256 with `secret`.
pub fn hs256_token(header: &str, payload: &str, secret: &[u8]) -> String {
    let signing_input = format!("{}.{}", b64u(header.as_bytes()), b64u(payload.as_bytes()));
    let tag = hmac_sha256(secret, signing_input.as_bytes());
    format!("{signing_input}.{}", b64u(&tag))
}

/// The fixture claims as JSON, with `exp` replaced and `extra` members merged in (a `null` value
/// removes a member).
pub fn payload(exp: Option<u64>, extra: serde_json::Value) -> String {
    let mut claims = serde_json::json!({
        "iat": ISSUED_AT,
        "nbf": ISSUED_AT,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "agent-7",
        "tenant": "acme",
        "region": "eu-west",
    });
    let object = claims.as_object_mut().unwrap();
    if let Some(exp) = exp {
        object.insert("exp".into(), exp.into());
    }
    for (name, value) in extra.as_object().unwrap() {
        if value.is_null() {
            object.remove(name);
        } else {
            object.insert(name.clone(), value.clone());
        }
    }
    claims.to_string()
}

/// An HS256 fixture token signed with [`HS_SECRET_B64`] and kid `hs-1`.
pub fn hs_token(payload_json: &str) -> String {
    hs256_token(
        r#"{"alg":"HS256","typ":"JWT","kid":"hs-1"}"#,
        payload_json,
        &hs_secret(),
    )
}

pub fn raw_key(kid: Option<&str>, alg: &str) -> RawKey {
    RawKey {
        kid: kid.map(str::to_string),
        alg: alg.to_string(),
        pem: None,
        base64: None,
        secret: None,
    }
}

pub fn pem_key(kid: Option<&str>, alg: &str, pem: &str) -> RawKey {
    RawKey {
        pem: Some(pem.to_string()),
        ..raw_key(kid, alg)
    }
}

pub fn base64_key(kid: Option<&str>, alg: &str, base64: &str) -> RawKey {
    RawKey {
        base64: Some(base64.to_string()),
        ..raw_key(kid, alg)
    }
}

pub fn secret_key(kid: Option<&str>, secret_b64: &str) -> RawKey {
    RawKey {
        secret: Some(secret_b64.to_string()),
        ..raw_key(kid, "HS256")
    }
}

/// One key per algorithm, each under the kid its fixture token names, plus `ed-1`.
pub fn all_fixture_keys() -> Vec<RawKey> {
    vec![
        secret_key(Some("hs-1"), HS_SECRET_B64),
        pem_key(Some("rs-1"), "RS256", RS_PUBLIC_PEM),
        pem_key(Some("es-1"), "ES256", ES_PUBLIC_PEM),
        pem_key(Some("ed-1"), "EdDSA", ED1_PUBLIC_PEM),
        pem_key(Some("ed-2"), "EdDSA", ED2_PUBLIC_PEM),
    ]
}

pub fn policy() -> VerifyPolicy {
    VerifyPolicy {
        issuer: Some(ISSUER.to_string()),
        audience: Some(AUDIENCE.to_string()),
        leeway_secs: 30,
        max_token_bytes: 8192,
        max_identity_len: 64,
        claims: ClaimNames {
            agent_id: "sub".to_string(),
            tenant_id: "tenant".to_string(),
            region: Some("region".to_string()),
        },
    }
}
