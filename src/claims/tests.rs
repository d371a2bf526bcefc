use nkeys::{KeyPair, KeyPairType};

use super::*;

const NOW: i64 = 1_700_000_000;

fn key(kind: KeyPairType, byte: u8) -> KeyPair {
    KeyPair::new_from_raw(kind, [byte; 32]).unwrap()
}

fn round_trip<N: ClaimBody + PartialEq + std::fmt::Debug + Clone>(
    subject: &str,
    body: N,
    signer: &KeyPair,
) {
    let claims = Claims::new(subject, body, NOW).with_name("x");
    let token = encode(&claims, signer).unwrap();
    let decoded = decode::<N>(&token, &Validation::at(NOW)).unwrap();
    assert_eq!(decoded.nats, claims.nats);
    assert_eq!(decoded.subject, subject);
    assert_eq!(decoded.issuer, signer.public_key());
    assert_eq!(decoded.name.as_deref(), Some("x"));
    assert!(!decoded.id.is_empty());
}

/// The decoded JSON payload of a token, as the server reads it.
fn payload_json(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&data_encoding::BASE64URL_NOPAD.decode(payload.as_bytes()).unwrap())
        .unwrap()
}

#[test]
fn every_claim_kind_round_trips() {
    let operator = key(KeyPairType::Operator, 1);
    let account = key(KeyPairType::Account, 2);
    let user = key(KeyPairType::User, 3);
    let server = key(KeyPairType::Server, 4);

    round_trip(
        &operator.public_key(),
        Operator {
            signing_keys: vec![key(KeyPairType::Operator, 5).public_key()],
            system_account: account.public_key(),
            ..Operator::default()
        },
        &operator,
    );

    let mut body = Account::default();
    body.limits.memory_storage = 1 << 20;
    body.limits.disk_storage = 1 << 30;
    body.limits.streams = 10;
    body.limits.consumer = 100;
    body.signing_keys = vec![
        SigningKey::Plain(key(KeyPairType::Account, 6).public_key()),
        SigningKey::Scoped(Box::new(UserScope {
            kind: "user_scope".into(),
            key: key(KeyPairType::Account, 7).public_key(),
            role: "sensor".into(),
            template: UserPermissionLimits::default(),
            description: "scoped".into(),
        })),
    ];
    body.revocations.insert(user.public_key(), NOW);
    body.default_permissions.publish.deny = vec!["secret.>".into()];
    body.authorization = ExternalAuthorization {
        auth_users: vec![user.public_key()],
        allowed_accounts: vec![account.public_key()],
        xkey: nkeys::XKey::new_from_raw([8; 32]).public_key(),
    };
    body.imports = vec![Import::service("claims", "$SYS.REQ.CLAIMS.UPDATE", &account.public_key())];
    body.exports = vec![Export {
        response_type: Some(ResponseType::Stream),
        ..Export::service("srv", "$SRV.>")
    }];
    round_trip(&account.public_key(), body, &operator);

    let mut body = User::default();
    body.permission_limits.permissions.publish.allow = vec!["sensors.*.telemetry".into()];
    body.permission_limits.permissions.subscribe.deny = vec!["admin.>".into()];
    body.permission_limits.permissions.response =
        Some(ResponsePermission { max_msgs: 1, ttl_nanos: 1_000_000_000 });
    body.permission_limits.limits.subs = 10;
    body.permission_limits.bearer_token = true;
    body.permission_limits.allowed_connection_types = vec!["STANDARD".into()];
    body.issuer_account = key(KeyPairType::Account, 9).public_key();
    round_trip(&user.public_key(), body, &account);

    round_trip(
        &operator.public_key(),
        Generic::delete_accounts(vec![account.public_key()]),
        &operator,
    );

    let mut request = AuthorizationRequest::new(
        ServerId {
            name: "s1".into(),
            host: "127.0.0.1".into(),
            id: server.public_key(),
            ..Default::default()
        },
        user.public_key(),
    );
    request.connect_options.username = "dev1".into();
    request.connect_options.password = "secret".into();
    request.client_information.id = 42;
    round_trip(&user.public_key(), request, &server);

    let mut response =
        Claims::new(user.public_key(), AuthorizationResponse::deny("nope".into()), NOW);
    response.audience = Some(server.public_key());
    let token = encode(&response, &account).unwrap();
    let back = decode::<AuthorizationResponse>(&token, &Validation::at(NOW)).unwrap();
    assert_eq!(back.audience.as_deref(), Some(server.public_key().as_str()));
    assert_eq!(back.nats.error, "nope");
}

#[test]
fn json_matches_nats_io_jwt_field_names() {
    let account = key(KeyPairType::Account, 2);
    let user = key(KeyPairType::User, 3);
    let mut body = User::default();
    body.permission_limits.permissions.publish.allow = vec!["a.>".into()];
    body.issuer_account = account.public_key();
    let token = encode(&Claims::new(user.public_key(), body, NOW), &account).unwrap();
    let json = payload_json(&token);
    // What nats-io/jwt writes for NewUserClaims with one pub allow and issuer_account.
    assert_eq!(
        json["nats"],
        serde_json::json!({
            "pub": {"allow": ["a.>"]}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "issuer_account": account.public_key(), "type": "user", "version": 2
        })
    );
    assert_eq!(json["iat"], NOW);
    assert!(json.get("exp").is_none());

    let header = token.split('.').next().unwrap();
    assert_eq!(
        data_encoding::BASE64URL_NOPAD.decode(header.as_bytes()).unwrap(),
        HEADER.as_bytes()
    );

    let operator = key(KeyPairType::Operator, 1);
    let token =
        encode(&Claims::new(account.public_key(), Account::default(), NOW), &operator).unwrap();
    let json = payload_json(&token);
    // What nats-io/jwt writes for NewAccountClaims.
    assert_eq!(
        json["nats"],
        serde_json::json!({
            "limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                       "wildcards": true, "conn": -1, "leaf": -1},
            "default_permissions": {"pub": {}, "sub": {}},
            "authorization": {},
            "type": "account", "version": 2
        })
    );
}

#[test]
fn missing_limits_decode_as_zero_like_the_server_reads_them() {
    let operator = key(KeyPairType::Operator, 1);
    let account = key(KeyPairType::Account, 2);
    let body = serde_json::json!({"type": "account", "version": 2});
    let payload = serde_json::json!({"iat": NOW, "iss": operator.public_key(), "sub": account.public_key(), "nats": body});
    let signing_input = format!(
        "{}.{}",
        data_encoding::BASE64URL_NOPAD.encode(HEADER.as_bytes()),
        data_encoding::BASE64URL_NOPAD.encode(payload.to_string().as_bytes())
    );
    let sig = operator.sign(signing_input.as_bytes()).unwrap();
    let token = format!("{signing_input}.{}", data_encoding::BASE64URL_NOPAD.encode(&sig));
    let decoded = decode::<Account>(&token, &Validation::at(NOW)).unwrap();
    assert_eq!(decoded.nats.limits, OperatorLimits::default());
    assert_eq!(decoded.nats.limits.conn, 0);
    assert_eq!(Account::default().limits, OperatorLimits::unlimited());
}

#[test]
fn encoding_is_deterministic_for_fixed_keys_and_time() {
    let operator = key(KeyPairType::Operator, 1);
    let account = key(KeyPairType::Account, 2);
    let claims = Claims::new(account.public_key(), Account::default(), NOW).with_name("acme");
    assert_eq!(encode(&claims, &operator).unwrap(), encode(&claims, &operator).unwrap());
}

fn user_token(exp: Option<i64>) -> String {
    let account = key(KeyPairType::Account, 2);
    let mut claims =
        Claims::new(key(KeyPairType::User, 3).public_key(), User::default(), NOW).with_name("dev1");
    claims.expires = exp;
    encode(&claims, &account).unwrap()
}

#[test]
fn a_flipped_byte_is_a_bad_signature() {
    let token = user_token(None);
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let mut sig_bytes = data_encoding::BASE64URL_NOPAD.decode(sig.as_bytes()).unwrap();
    sig_bytes[10] ^= 0x01;
    let forged = format!("{rest}.{}", data_encoding::BASE64URL_NOPAD.encode(&sig_bytes));
    assert_eq!(decode::<User>(&forged, &Validation::at(NOW)), Err(ClaimsError::BadSignature));

    // Change the payload (the user name) but keep the old signature.
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let payload = data_encoding::BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap();
    let payload = String::from_utf8(payload).unwrap().replace("dev1", "dev2");
    parts[1] = data_encoding::BASE64URL_NOPAD.encode(payload.as_bytes());
    assert_eq!(
        decode::<User>(&parts.join("."), &Validation::at(NOW)),
        Err(ClaimsError::BadSignature)
    );
}

#[test]
fn wrong_issuer_kind_is_rejected_on_both_sides() {
    // Signing: an operator may not sign a user.
    let claims = Claims::new(key(KeyPairType::User, 3).public_key(), User::default(), NOW);
    let err = encode(&claims, &key(KeyPairType::Operator, 1)).unwrap_err();
    assert!(matches!(err, ClaimsError::WrongIssuerKind { claim: "user", .. }));

    // Verifying: a user token read as an account token was issued by an account key.
    let err = decode::<Account>(&user_token(None), &Validation::at(NOW)).unwrap_err();
    assert!(matches!(err, ClaimsError::WrongIssuerKind { claim: "account", .. }), "{err:?}");

    // An authorization request must come from a server key.
    let request =
        AuthorizationRequest::new(ServerId::default(), key(KeyPairType::User, 3).public_key());
    let err = encode(&Claims::new("x", request, NOW), &key(KeyPairType::Account, 2)).unwrap_err();
    assert!(matches!(err, ClaimsError::WrongIssuerKind { .. }));
}

#[test]
fn wrong_type_and_subject_kind_are_rejected() {
    // Same issuer kind (operator) but an operator token is not an account token.
    let operator = key(KeyPairType::Operator, 1);
    let token =
        encode(&Claims::new(operator.public_key(), Operator::default(), NOW), &operator).unwrap();
    let err = decode::<Generic>(&token, &Validation::at(NOW)).unwrap_err();
    assert!(matches!(err, ClaimsError::WrongClaimType { expected: "generic", .. }));

    let claims = Claims::new(operator.public_key(), Account::default(), NOW);
    assert_eq!(
        encode(&claims, &operator),
        Err(ClaimsError::WrongSubjectKind { expected: "account" })
    );
}

#[test]
fn expiry_honours_clock_skew() {
    let token = user_token(Some(NOW + 60));
    assert!(decode::<User>(&token, &Validation::at(NOW + 60)).is_ok());
    assert!(decode::<User>(&token, &Validation::at(NOW + 60 + DEFAULT_CLOCK_SKEW_SECS)).is_ok());
    let late = NOW + 61 + DEFAULT_CLOCK_SKEW_SECS;
    assert_eq!(
        decode::<User>(&token, &Validation::at(late)),
        Err(ClaimsError::Expired { exp: NOW + 60, now: late })
    );
    assert!(decode::<User>(&token, &Validation { now: NOW + 61, skew: 0 }).is_err());
}

#[test]
fn not_before_in_the_future_is_rejected() {
    let account = key(KeyPairType::Account, 2);
    let mut claims = Claims::new(key(KeyPairType::User, 3).public_key(), User::default(), NOW);
    claims.not_before = Some(NOW + 600);
    let token = encode(&claims, &account).unwrap();
    assert!(matches!(
        decode::<User>(&token, &Validation::at(NOW)),
        Err(ClaimsError::NotYetValid { .. })
    ));
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let v = Validation::at(NOW);
    for junk in ["", "a", "a.b", "a.b.c.d", "!!.??.**", "eyJ0eXAiOiJKV1QifQ.e30.AA"] {
        assert!(decode::<User>(junk, &v).is_err(), "{junk:?}");
    }
    let other_header = format!(
        "{}.{}",
        data_encoding::BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#),
        user_token(None).split_once('.').unwrap().1
    );
    assert_eq!(decode::<User>(&other_header, &v), Err(ClaimsError::UnsupportedHeader));
}

#[test]
fn malformed_payload_errors_do_not_quote_values() {
    let server = key(KeyPairType::Server, 4);
    // A callout request whose connect_opts.pass has the wrong type: serde would quote it.
    let payload = serde_json::json!({
        "iat": NOW, "iss": server.public_key(), "sub": "x",
        "nats": {"type": "authorization_request", "version": 2, "user_nkey": 7,
                 "connect_opts": {"pass": ["hunter2-secret"]}}
    });
    let signing_input = format!(
        "{}.{}",
        data_encoding::BASE64URL_NOPAD.encode(HEADER.as_bytes()),
        data_encoding::BASE64URL_NOPAD.encode(payload.to_string().as_bytes())
    );
    let sig = server.sign(signing_input.as_bytes()).unwrap();
    let token = format!("{signing_input}.{}", data_encoding::BASE64URL_NOPAD.encode(&sig));
    let err = decode::<AuthorizationRequest>(&token, &Validation::at(NOW)).unwrap_err();
    assert!(matches!(err, ClaimsError::Malformed(_)));
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn the_remembered_issuer_key_verifies_only_its_own_signatures() {
    let (a, b) = (key(KeyPairType::Account, 7), key(KeyPairType::Account, 8));
    let user = key(KeyPairType::User, 9).public_key();
    let signed_by = |signer: &KeyPair| {
        encode(&Claims::new(user.as_str(), User::default(), NOW), signer).unwrap()
    };
    let by_a = signed_by(&a);
    assert!(decode::<User>(&by_a, &Validation::at(NOW)).is_ok(), "a is now remembered");
    // b's signature over a payload naming a as its issuer.
    let by_b = signed_by(&b);
    let (a_head, a_payload, _) = {
        let mut p = by_a.split('.');
        (p.next().unwrap(), p.next().unwrap(), p.next().unwrap())
    };
    let signing_input = format!("{a_head}.{a_payload}");
    let b_sig = data_encoding::BASE64URL_NOPAD.encode(&b.sign(signing_input.as_bytes()).unwrap());
    let forged = format!("{signing_input}.{b_sig}");
    assert_eq!(decode::<User>(&forged, &Validation::at(NOW)), Err(ClaimsError::BadSignature));
    // Another issuer replaces the remembered one and is checked against its own key.
    assert_eq!(decode::<User>(&by_b, &Validation::at(NOW)).unwrap().issuer, b.public_key());
    assert!(decode::<User>(&by_a, &Validation::at(NOW)).is_ok(), "and back");
}
