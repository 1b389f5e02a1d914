//! Hostile input for every request validator: `c2m_server::convert` (protobuf request ->
//! domain command) and the domain rules behind it (campaign terms, price ladders, money and
//! currency, ids and keys, page tokens, the pooling rule that checks a pre-order's
//! quantity).
//!
//! Requests come from clients we do not control, so any field may hold any value: strings
//! of any length and content, every `i64` (`i64::MIN`, `i64::MAX`, 0, -1), timestamps out
//! of range, nanos out of range, ladders out of order. The properties: nothing panics; a
//! refusal is INVALID_ARGUMENT (or the domain's `InvalidArgument`) naming a field the
//! request has; what is accepted is within the rules (ids and keys printable ASCII of at
//! most 128 bytes, timestamps round-trip, page tokens round-trip, a pooled batch never
//! overflows). Ids, keys and page requests are checked against an independent oracle, so a
//! validator that lets too much or too little through fails.
//!
//! `PROPTEST_CASES` sets the number of cases of each property (defaults below, a few
//! seconds for the file in a debug build);
//! `PROPTEST_CASES=100000 cargo test -p c2m-server --test hostile_input` searches deeper.

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::Config;
use tonic::{Code, Status};

use c2m_domain::pooling::admit;
use c2m_domain::{
    Campaign, CampaignId, CampaignProgress, CampaignSpec, CampaignStatus, Currency, DomainError,
    Money, PageQuery, PageRequest, PoolState,
};
use c2m_proto::v1 as pb;
use c2m_server::convert;

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// The fields a CreateCampaign refusal may name.
const CAMPAIGN_FIELDS: &[&str] = &[
    "idempotency_key",
    "sku",
    "title",
    "currency",
    "unit_price",
    "deposit",
    "batch_threshold",
    "batch_cap",
    "max_per_order",
    "max_per_consumer",
    "total_cap",
    "opens_at",
    "deadline",
    "price_ladder",
    "balance_window_seconds",
    "ships_within_days",
];

/// The field a status names, from its `ErrorInfo` (reason `INVALID_FIELD`, metadata
/// `field`); the message must name it too, for people.
fn status_field(s: &Status) -> Result<String, TestCaseError> {
    use tonic_types::StatusExt;
    prop_assert_eq!(s.code(), Code::InvalidArgument, "{:?}", s);
    let details = s.get_error_details();
    let info = details.error_info();
    prop_assert!(info.is_some(), "no ErrorInfo: {:?}", s);
    let reason = info.map(|i| i.reason.clone()).unwrap_or_default();
    prop_assert_eq!(reason.as_str(), "INVALID_FIELD", "{:?}", s);
    let field = info
        .and_then(|i| i.metadata.get("field").cloned())
        .unwrap_or_default();
    prop_assert!(
        s.message().starts_with(&format!("invalid {field}: ")),
        "the message does not name {field}: {:?}",
        s.message()
    );
    Ok(field)
}

fn domain_field(e: &DomainError) -> Result<String, TestCaseError> {
    match e {
        DomainError::InvalidArgument { field, reason } => {
            prop_assert!(!reason.trim().is_empty(), "no reason for {field}");
            Ok(field.clone())
        }
        other => Err(TestCaseError::fail(format!(
            "expected InvalidArgument, got {other:?}"
        ))),
    }
}

/// `price_ladder[3].min_units` -> `price_ladder`.
fn root(field: &str) -> &str {
    field.split(['[', '.']).next().unwrap_or_default()
}

/// What a client-supplied id or key must be, stated independently of the code under test.
fn token_ok(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// An id naming a record (a campaign, a pre-order, a consumer) is a token once the white
/// space around it is dropped (api.md); a key is taken as sent ([`token_ok`]).
fn ref_ok(s: &str) -> bool {
    token_ok(s.trim_matches(char::is_whitespace))
}

// ---------------------------------------------------------------------------------------
// Strategies

fn extreme_i64() -> BoxedStrategy<i64> {
    prop_oneof![
        1 => prop::sample::select(vec![
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            i64::MAX - 1,
            -1,
            0,
            1,
            i64::from(i32::MAX),
            i64::MAX / 2,
        ]),
        1 => any::<i64>(),
        3 => 1i64..100_000,
    ]
    .boxed()
}

/// Strings a client might send: anything, printable ASCII around the length limit,
/// plausible ids, and the characters that break naive checks.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        "[!-~]{0,3}",
        "[!-~]{126,130}",
        "[a-z0-9_-]{1,20}",
        prop::sample::select(vec![
            "",
            " ",
            "\t",
            "a b",
            // An id pasted with the space around it: a reference drops it, a key does not.
            " A",
            "\tcon_1 ",
            "a\u{0}b",
            "\u{7f}",
            "é",
            "a\nb",
            "CNY",
            "cny",
            "CYN",
            "CNYY",
            "p0",
            "p-1",
            "p+1",
            "p",
            "P1",
            "p9223372036854775807",
            "p9223372036854775808",
            "kettle-17-white",
        ])
        .prop_map(String::from),
        (1usize..5000).prop_map(|n| "x".repeat(n)),
    ]
    .boxed()
}

fn timestamp() -> BoxedStrategy<prost_types::Timestamp> {
    let now = Utc::now().timestamp();
    let seconds = prop_oneof![
        1 => extreme_i64(),
        // Near now, so that valid deadlines are common.
        3 => now - 86_400..now + 30 * 86_400,
        // Near chrono's limits (about +-262,000 years).
        1 => 8_210_266_876_799i64..8_210_266_876_801,
        1 => -8_334_601_228_801i64..-8_334_601_228_799,
    ];
    let nanos = prop_oneof![
        1 => prop::sample::select(vec![i32::MIN, -1, 0, 999_999_999, 1_000_000_000, i32::MAX]),
        1 => any::<i32>(),
        3 => 0i32..1_000_000_000,
    ];
    (seconds, nanos)
        .prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos })
        .boxed()
}

fn create_campaign_request() -> BoxedStrategy<pb::CreateCampaignRequest> {
    let money = prop_oneof![1 => extreme_i64(), 2 => 1i64..50_000];
    let units = prop_oneof![1 => extreme_i64(), 2 => 1i64..200];
    let ladder = prop::collection::vec(
        (units.clone(), money.clone()).prop_map(|(min_units, unit_price_minor)| pb::PriceTier {
            min_units,
            unit_price_minor,
        }),
        0..25,
    );
    (
        (text(), text(), text(), text()),
        (money.clone(), money),
        (
            units.clone(),
            prop::option::of(units.clone()),
            prop::option::of(units.clone()),
            prop::option::of(units.clone()),
            prop::option::of(units),
        ),
        (prop::option::of(timestamp()), prop::option::of(timestamp())),
        ladder,
        (
            prop::option::of(extreme_i64()),
            prop::option::of(extreme_i64()),
        ),
    )
        .prop_map(
            |(
                (idempotency_key, sku, title, currency),
                (unit_price_minor, deposit_minor),
                (batch_threshold, batch_cap, max_per_order, max_per_consumer, total_cap),
                (opens_at, deadline),
                price_ladder,
                (balance_window_seconds, ships_within_days),
            )| pb::CreateCampaignRequest {
                idempotency_key,
                sku,
                title,
                currency,
                unit_price_minor,
                deposit_minor,
                batch_threshold,
                batch_cap,
                max_per_order,
                max_per_consumer,
                total_cap,
                opens_at,
                deadline,
                price_ladder,
                balance_window_seconds,
                ships_within_days,
            },
        )
        .boxed()
}

/// A request that is valid except where `hostile` says: many generated requests fail at
/// the first field, so this one reaches the later rules too.
fn mostly_valid_campaign_request() -> BoxedStrategy<pb::CreateCampaignRequest> {
    let now = Utc::now();
    (
        create_campaign_request(),
        prop::collection::vec(0usize..16, 0..3),
    )
        .prop_map(move |(wild, hostile)| {
            let mut r = pb::CreateCampaignRequest {
                idempotency_key: "key-1".into(),
                sku: "kettle-17-white".into(),
                title: "Kettle".into(),
                currency: "CNY".into(),
                unit_price_minor: 39_900,
                deposit_minor: 5_000,
                batch_threshold: 10,
                batch_cap: None,
                max_per_order: None,
                max_per_consumer: Some(20),
                total_cap: None,
                opens_at: None,
                deadline: Some(convert::timestamp(now + Duration::days(7))),
                price_ladder: vec![],
                balance_window_seconds: None,
                ships_within_days: None,
            };
            for h in hostile {
                match h {
                    0 => r.idempotency_key = wild.idempotency_key.clone(),
                    1 => r.sku = wild.sku.clone(),
                    2 => r.title = wild.title.clone(),
                    3 => r.currency = wild.currency.clone(),
                    4 => r.unit_price_minor = wild.unit_price_minor,
                    5 => r.deposit_minor = wild.deposit_minor,
                    6 => r.batch_threshold = wild.batch_threshold,
                    7 => r.batch_cap = wild.batch_cap,
                    8 => r.max_per_order = wild.max_per_order,
                    9 => r.max_per_consumer = wild.max_per_consumer,
                    10 => r.total_cap = wild.total_cap,
                    11 => r.opens_at = wild.opens_at,
                    12 => r.deadline = wild.deadline,
                    13 => r.price_ladder = wild.price_ladder.clone(),
                    14 => r.balance_window_seconds = wild.balance_window_seconds,
                    _ => r.ships_within_days = wild.ships_within_days,
                }
            }
            r
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------
// Ids, keys, timestamps, page tokens, currencies

/// A key is taken exactly as sent; an id naming a record (a reference) is taken without
/// the white space around it (api.md: "surrounding spaces of a reference are ignored"),
/// so `" cmp_1"` pasted from a listing names `cmp_1`.
#[test]
fn ids_and_keys_accept_exactly_printable_ascii_up_to_128_bytes() {
    let padded = (text(), 0usize..3, 0usize..3).prop_map(|(s, before, after)| {
        format!("{}{s}{}", " \t".repeat(before), "\n ".repeat(after))
    });
    proptest!(config(1000), |(s in prop_oneof![text(), padded])| {
        let referenced = s.trim_matches(char::is_whitespace);
        let checks: [(&str, Result<(), Status>, &str); 3] = [
            ("idempotency_key", convert::idempotency_key(&s).map(drop), &s),
            ("campaign_id", convert::campaign_id(&s).map(drop), referenced),
            ("preorder_id", convert::preorder_id(&s).map(drop), referenced),
        ];
        for (field, r, taken) in checks {
            match r {
                Ok(()) => prop_assert!(token_ok(taken), "{field} accepted {s:?}"),
                Err(status) => {
                    prop_assert!(!token_ok(taken), "{field} refused {s:?}: {status:?}");
                    prop_assert_eq!(status_field(&status)?, field);
                }
            }
        }
    });
}

#[test]
fn timestamps_parse_or_name_their_field() {
    proptest!(config(1000), |(t in timestamp())| {
        match convert::parse_timestamp("deadline", &t) {
            Ok(parsed) => {
                prop_assert!((0..1_000_000_000).contains(&t.nanos));
                // What is accepted comes back as it was sent.
                prop_assert_eq!(convert::timestamp(parsed), t);
            }
            Err(status) => prop_assert_eq!(status_field(&status)?, "deadline"),
        }
    });
}

/// Any page token either reads back as the position the server issued it for, with the
/// query it was issued for, or is refused naming its field: a token of another query (or
/// an older server's, which names none) never reads as a position.
#[test]
fn page_requests_parse_or_name_their_field() {
    let this = PageQuery::new("ListPreorders", &["", "cmp-a"]);
    let other = PageQuery::new("ListPreorders", &["", "cmp-b"]);
    let issued = |n: i64, q: PageQuery| {
        c2m_domain::Page::<()> {
            items: vec![],
            next_after: Some(n),
        }
        .next_token(q)
    };
    let token = prop_oneof![
        text(),
        any::<i64>().prop_map(|n| format!("p{n}")),
        any::<u64>().prop_map(|n| format!("p{n}")),
        (any::<i64>(), any::<bool>())
            .prop_map(move |(n, mine)| issued(n, if mine { this } else { other })),
        (any::<i64>(), any::<u64>()).prop_map(|(n, q)| format!("p{n}.{q:016x}")),
    ];
    let size = prop_oneof![any::<u32>(), 0u32..600];
    proptest!(config(1000), |(size in size, token in token)| {
        match PageRequest::parse(size, &token, this) {
            Ok(p) => {
                prop_assert!((1..=c2m_domain::page::MAX_PAGE_SIZE).contains(&p.size));
                prop_assert!(size <= c2m_domain::page::MAX_PAGE_SIZE);
                match p.after {
                    None => prop_assert!(token.is_empty()),
                    Some(n) => {
                        prop_assert!(n >= 0);
                        // Only the token the server issued for this position and query.
                        prop_assert_eq!(&token, &issued(n, this));
                    }
                }
            }
            Err(e) => {
                let field = domain_field(&e)?;
                prop_assert!(field == "page_size" || field == "page_token", "{field}");
                if field == "page_size" {
                    prop_assert!(size > c2m_domain::page::MAX_PAGE_SIZE);
                }
            }
        }
    });
}

#[test]
fn currencies_and_money_never_panic() {
    proptest!(config(1000), |(code in text(), a in extreme_i64(), b in extreme_i64())| {
        match Currency::parse(&code) {
            Ok(c) => {
                prop_assert_eq!(c.as_str(), code.as_str());
                prop_assert!(code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()));
                let m = Money::new(a, c);
                match m.times(b, "quantity") {
                    Ok(p) => prop_assert_eq!(Some(p.minor), a.checked_mul(b)),
                    Err(e) => {
                        prop_assert_eq!(domain_field(&e)?, "quantity");
                        prop_assert!(a.checked_mul(b).is_none());
                    }
                }
                prop_assert_eq!(
                    m.checked_add(Money::new(b, c)).map(|x| x.minor),
                    a.checked_add(b)
                );
                prop_assert_eq!(
                    m.checked_sub(Money::new(b, c)).map(|x| x.minor),
                    a.checked_sub(b)
                );
                let _ = m.to_string();
            }
            Err(e) => prop_assert_eq!(domain_field(&e)?, "currency"),
        }
    });
}

// ---------------------------------------------------------------------------------------
// Requests

/// Converts a CreateCampaign request, validates its terms and uses them as the service
/// would: shown to clients, priced, and admitting pre-orders of any quantity.
fn check_create_campaign(
    r: pb::CreateCampaignRequest,
    now: DateTime<Utc>,
    quantity: i64,
    state: PoolState,
) -> Result<(), TestCaseError> {
    let ladder_len = r.price_ladder.len();
    let cmd = match convert::create_campaign(r) {
        Ok(cmd) => cmd,
        Err(status) => {
            let field = status_field(&status)?;
            prop_assert!(
                ["idempotency_key", "opens_at", "deadline"].contains(&field.as_str()),
                "conversion named {field}"
            );
            return Ok(());
        }
    };
    let terms = match cmd.spec.validate(now) {
        Ok(t) => t,
        Err(e) => {
            let field = domain_field(&e)?;
            prop_assert!(CAMPAIGN_FIELDS.contains(&root(&field)), "named {field}");
            if let Some(i) = field
                .strip_prefix("price_ladder[")
                .and_then(|r| r.split(']').next())
            {
                prop_assert!(i.parse::<usize>().unwrap() < ladder_len);
            }
            return Ok(());
        }
    };
    // Terms that validated hold the rules the pooling relies on.
    prop_assert!(terms.unit_price.minor > 0 && terms.deposit.minor > 0);
    prop_assert!(terms.deposit.minor <= terms.unit_price.minor);
    prop_assert!(terms.batch_threshold > 0);
    prop_assert!(terms.deadline > now && terms.deadline > terms.opens_at);
    prop_assert!(terms.ships_within_days > 0);
    prop_assert!(
        terms.ships_within_days * 86_400 > terms.balance_window_secs.unwrap_or(0),
        "the promise outlasts the balance window"
    );
    let _ = c2m_domain::Fingerprint::of("create_campaign", &cmd.spec);

    let campaign = Campaign {
        id: CampaignId::generate(),
        terms: terms.clone(),
        created_at: now,
        closed_at: None,
        cancelled_at: None,
    };
    let shown = convert::campaign(&campaign, now);
    prop_assert_eq!(shown.price_ladder.len(), terms.price_ladder.tiers().len());
    let _ = terms.money_policy();
    let units = state.open_batch_units;
    let _ = convert::progress(
        &CampaignProgress {
            campaign: campaign.clone(),
            open_batch_units: units,
            open_batch_seq: Some(1),
            batches_locked: 0,
            batches_failed: 0,
            units_committed: units,
        },
        now,
    );
    let price = terms.price_for(units);
    prop_assert!(price.minor >= terms.deposit.minor && price.minor <= terms.unit_price.minor);

    for status in [
        CampaignStatus::Open,
        CampaignStatus::Scheduled,
        CampaignStatus::Closed,
    ] {
        match admit(&terms, status, state, quantity) {
            Ok(a) => {
                prop_assert_eq!(status, CampaignStatus::Open);
                prop_assert!(quantity > 0);
                prop_assert_eq!(Some(a.batch_units_after), units.checked_add(quantity));
                if let Some(cap) = terms.batch_cap {
                    prop_assert!(a.batch_units_after <= cap);
                }
                if let Some(max) = terms.max_per_consumer {
                    prop_assert!(state.consumer_units.checked_add(quantity) <= Some(max));
                }
            }
            Err(DomainError::InvalidArgument { field, .. }) => {
                prop_assert_eq!(field, "quantity")
            }
            Err(DomainError::Refused(r)) => prop_assert!(!r.to_string().is_empty()),
            Err(other) => return Err(TestCaseError::fail(format!("admit: {other:?}"))),
        }
    }
    Ok(())
}

fn pool_state() -> BoxedStrategy<PoolState> {
    let count = prop_oneof![
        3 => 0i64..1000,
        1 => prop::sample::select(vec![0, 1, i64::MAX / 2, i64::MAX - 1, i64::MAX]),
    ];
    (count.clone(), count.clone(), count)
        .prop_map(|(open, campaign, consumer)| PoolState {
            open_batch_units: open,
            campaign_units: campaign.max(open),
            consumer_units: consumer,
        })
        .boxed()
}

#[test]
fn create_campaign_requests_are_refused_by_field_or_make_sound_terms() {
    let now = Utc::now();
    let request = prop_oneof![1 => create_campaign_request(), 3 => mostly_valid_campaign_request()];
    proptest!(config(1000), |(r in request, quantity in extreme_i64(), state in pool_state())| {
        check_create_campaign(r, now, quantity, state)?;
    });
}

#[test]
fn preorder_requests_are_refused_by_field_or_accepted_whole() {
    let amount = prop::option::of(
        (extreme_i64(), text()).prop_map(|(minor, currency)| pb::Money { minor, currency }),
    );
    proptest!(config(1000), |(
        key in text(), id in text(), consumer in text(), quantity in extreme_i64(),
        amount in amount,
    )| {
        // PlacePreorder: key, campaign, consumer; the quantity is the pooling rule's.
        match convert::place_preorder(pb::PlacePreorderRequest {
            idempotency_key: key.clone(),
            campaign_id: id.clone(),
            consumer_id: consumer.clone(),
            channel: None,
            region: None,
            referrer: None,
            quantity,
        }) {
            Ok(cmd) => {
                prop_assert!(token_ok(&key) && ref_ok(&id) && ref_ok(&consumer));
                prop_assert_eq!(cmd.quantity, quantity);
            }
            Err(s) => {
                let field = status_field(&s)?;
                let expected = [("idempotency_key", token_ok(&key)), ("campaign_id", ref_ok(&id)), ("consumer_id", ref_ok(&consumer))]
                    .into_iter()
                    .find(|(_, ok)| !ok)
                    .map(|(f, _)| f);
                prop_assert_eq!(Some(field.as_str()), expected);
            }
        }
        // CancelPreorder: the consumer is optional (empty means not given).
        match convert::cancel_preorder(pb::CancelPreorderRequest {
            idempotency_key: key.clone(),
            preorder_id: id.clone(),
            consumer_id: consumer.clone(),
        }) {
            Ok(cmd) => {
                prop_assert!(token_ok(&key) && ref_ok(&id));
                prop_assert_eq!(cmd.consumer_id.is_none(), consumer.is_empty());
            }
            Err(s) => {
                let field = status_field(&s)?;
                let expected = [("idempotency_key", token_ok(&key)), ("preorder_id", ref_ok(&id))]
                    .into_iter()
                    .find(|(_, ok)| !ok)
                    .map(|(f, _)| f)
                    .or((!consumer.is_empty() && !ref_ok(&consumer)).then_some("consumer_id"));
                prop_assert_eq!(Some(field.as_str()), expected);
            }
        }
        // PayBalance: amount present, a currency, positive; then the ids.
        match convert::pay_balance(pb::PayBalanceRequest {
            idempotency_key: key.clone(),
            preorder_id: id.clone(),
            consumer_id: consumer.clone(),
            amount: amount.clone(),
        }) {
            Ok(cmd) => {
                let a = amount.as_ref().unwrap();
                prop_assert!(a.minor > 0);
                prop_assert_eq!(cmd.amount.minor, a.minor);
                prop_assert_eq!(cmd.amount.currency.as_str(), a.currency.as_str());
                prop_assert!(token_ok(&key) && ref_ok(&id));
            }
            Err(s) => {
                let field = status_field(&s)?;
                prop_assert!(
                    ["amount", "amount.currency", "amount.minor", "idempotency_key",
                     "preorder_id", "consumer_id"].contains(&field.as_str()),
                    "named {field}"
                );
            }
        }
        // ListPreorders: a consumer, a campaign, or both.
        match convert::preorder_filter(&consumer, &id) {
            Ok(_) => prop_assert!(
                (consumer.is_empty() || ref_ok(&consumer))
                    && (id.is_empty() || ref_ok(&id))
                    && !(consumer.is_empty() && id.is_empty())
            ),
            Err(s) => {
                let field = status_field(&s)?;
                prop_assert!(field == "consumer_id" || field == "campaign_id", "{field}");
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// Regressions: cases the properties found.

/// A consumer holding units who asks for `i64::MAX` more: the limit check added the two
/// without checking, which panicked in debug builds and, in release builds, wrapped to a
/// negative sum that passed the limit and pooled a batch with negative units.
#[test]
fn a_huge_quantity_does_not_overflow_the_pooling_rule() {
    let now = Utc::now();
    let spec = CampaignSpec {
        sku: "kettle".into(),
        title: "Kettle".into(),
        currency: "CNY".into(),
        unit_price: 1,
        deposit: 1,
        batch_threshold: 10,
        batch_cap: None,
        max_per_order: None,
        max_per_consumer: Some(20),
        total_cap: None,
        opens_at: None,
        deadline: now + Duration::days(1),
        price_ladder: vec![],
        balance_window_secs: None,
        ships_within_days: None,
    };
    let terms = spec.validate(now).unwrap();
    let state = PoolState {
        open_batch_units: 3,
        campaign_units: 3,
        consumer_units: 3,
    };
    let e = admit(&terms, CampaignStatus::Open, state, i64::MAX).unwrap_err();
    assert_eq!(e.reason(), "PER_CONSUMER_LIMIT", "{e:?}");
    // Without a per-consumer limit, the batch's own count must not overflow either.
    let mut open = terms.clone();
    open.max_per_consumer = None;
    let e = admit(&open, CampaignStatus::Open, state, i64::MAX).unwrap_err();
    assert_eq!(
        domain_field(&e).unwrap(),
        "quantity",
        "an order that overflows the batch names the quantity"
    );
}
