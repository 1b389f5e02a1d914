//! The money ledger's rules: a chart of accounts, balanced transactions, and the life of a
//! deposit hold. No I/O: the store writes what these values say, in the same transaction
//! as the pooling change that causes the movement.
//!
//! # Chart of accounts
//!
//! Every account is in the campaign's currency. A posting's amount is signed: positive
//! credits the account (money arrives), negative debits it (money leaves). A transaction's
//! postings sum to zero, so the sum over all accounts is always zero.
//!
//! | account                | holds                                                          |
//! |------------------------|----------------------------------------------------------------|
//! | `consumer:<id>`        | the consumer's own money outside c2m; negative = paid in net   |
//! | `holds:<campaign>`     | deposits authorised (held) on consumers' payment methods, not yet captured |
//! | `escrow:<campaign>`    | captured deposits and paid balances, kept until the batch goes to production |
//! | `merchant:<campaign>`  | what the merchant has earned: paid units at production, forfeited deposits |
//!
//! # Movements
//!
//! | kind      | when                                   | postings                         |
//! |-----------|----------------------------------------|----------------------------------|
//! | `hold`    | a pre-order is placed                  | consumer −d, holds +d            |
//! | `release` | cancelled while open, or batch failed  | holds −d, consumer +d            |
//! | `capture` | the batch locks                        | holds −d, escrow +d              |
//! | `balance` | the consumer pays the balance          | consumer −b, escrow +b           |
//! | `forfeit` | the balance window closes unpaid       | escrow −d, merchant +d           |
//! | `settle`  | the balance window closes (or at lock when nothing is left to pay) | escrow −paid, merchant +paid |
//! | `refund`  | the merchant cancels the campaign (a locked batch not in production) | escrow (or merchant, once settled) −(d+b), consumer +(d+b) |
//!
//! A hold is a pending transfer: it is resolved exactly once, by `capture` or by `release`
//! ([`HoldState`]); the store backs this with a unique index per pre-order and kind and a
//! trigger that allows only `held → captured` or `held → released`.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{CampaignId, ConsumerId, Currency, DomainError, Money, Refusal};

/// An account of the ledger (see the module docs for the chart).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Account {
    Consumer(ConsumerId),
    Holds(CampaignId),
    Escrow(CampaignId),
    Merchant(CampaignId),
}

impl Account {
    /// The account's stored name, `kind:id`.
    pub fn code(&self) -> String {
        match self {
            Account::Consumer(id) => format!("consumer:{id}"),
            Account::Holds(id) => format!("holds:{id}"),
            Account::Escrow(id) => format!("escrow:{id}"),
            Account::Merchant(id) => format!("merchant:{id}"),
        }
    }

    /// Parses a stored name back; `None` for anything [`Account::code`] cannot produce.
    pub fn parse(code: &str) -> Option<Account> {
        let (kind, id) = code.split_once(':')?;
        if id.is_empty() {
            return None;
        }
        Some(match kind {
            "consumer" => Account::Consumer(ConsumerId::from_trusted(id.to_owned())),
            "holds" => Account::Holds(CampaignId::from_trusted(id.to_owned())),
            "escrow" => Account::Escrow(CampaignId::from_trusted(id.to_owned())),
            "merchant" => Account::Merchant(CampaignId::from_trusted(id.to_owned())),
            _ => return None,
        })
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code())
    }
}

/// Why money moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnKind {
    Hold,
    Release,
    Capture,
    Balance,
    Forfeit,
    Settle,
    /// A cancelled campaign gives a consumer back what it took: the captured deposit and
    /// the paid balance, from escrow (or from the merchant, once the batch settled).
    Refund,
}

impl TxnKind {
    pub const ALL: [TxnKind; 7] = [
        TxnKind::Hold,
        TxnKind::Release,
        TxnKind::Capture,
        TxnKind::Balance,
        TxnKind::Forfeit,
        TxnKind::Settle,
        TxnKind::Refund,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            TxnKind::Hold => "hold",
            TxnKind::Release => "release",
            TxnKind::Capture => "capture",
            TxnKind::Balance => "balance",
            TxnKind::Forfeit => "forfeit",
            TxnKind::Settle => "settle",
            TxnKind::Refund => "refund",
        }
    }

    pub fn parse(s: &str) -> Option<TxnKind> {
        TxnKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One leg of a transaction: `amount` minor units credited (positive) or debited
/// (negative) to `account`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub account: Account,
    pub amount: i64,
}

/// A balanced ledger transaction. The fields are private and the only constructors check
/// the balance, so an unbalanced or mixed-currency transaction cannot exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerTxn {
    kind: TxnKind,
    currency: Currency,
    postings: Vec<Posting>,
}

impl LedgerTxn {
    /// Checks that there are at least two postings, none zero, on distinct accounts, and
    /// that they sum to zero (without overflow).
    pub fn new(
        kind: TxnKind,
        currency: Currency,
        postings: Vec<Posting>,
    ) -> Result<LedgerTxn, DomainError> {
        if postings.len() < 2 {
            return Err(DomainError::invalid(
                "postings",
                "a transaction needs at least two postings",
            ));
        }
        let mut sum: i64 = 0;
        for (i, p) in postings.iter().enumerate() {
            if p.amount == 0 {
                return Err(DomainError::invalid("postings", "a posting of zero"));
            }
            if postings[..i].iter().any(|q| q.account == p.account) {
                return Err(DomainError::invalid(
                    "postings",
                    format!("account {} appears twice", p.account),
                ));
            }
            sum = sum.checked_add(p.amount).ok_or_else(|| {
                DomainError::invalid("postings", "amounts overflow 64-bit minor units")
            })?;
        }
        if sum != 0 {
            return Err(DomainError::invalid(
                "postings",
                format!("transaction does not balance: postings sum to {sum}"),
            ));
        }
        Ok(LedgerTxn {
            kind,
            currency,
            postings,
        })
    }

    /// Moves `amount` (positive, one currency) from `from` to `to`: the shape of every
    /// movement c2m makes today.
    pub fn transfer(
        kind: TxnKind,
        from: Account,
        to: Account,
        amount: Money,
    ) -> Result<LedgerTxn, DomainError> {
        if amount.minor <= 0 {
            return Err(DomainError::invalid(
                "amount",
                format!("a transfer must be positive, got {}", amount.minor),
            ));
        }
        LedgerTxn::new(
            kind,
            amount.currency,
            vec![
                Posting {
                    account: from,
                    amount: -amount.minor,
                },
                Posting {
                    account: to,
                    amount: amount.minor,
                },
            ],
        )
    }

    pub fn kind(&self) -> TxnKind {
        self.kind
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn postings(&self) -> &[Posting] {
        &self.postings
    }

    /// The money moved: the sum of the credits.
    pub fn amount(&self) -> Money {
        Money::new(
            self.postings
                .iter()
                .filter(|p| p.amount > 0)
                .map(|p| p.amount)
                .sum(),
            self.currency,
        )
    }
}

/// A stored ledger transaction, as listed for audits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub id: String,
    pub campaign_id: CampaignId,
    pub preorder_id: Option<crate::PreorderId>,
    pub batch_id: Option<crate::BatchId>,
    pub txn: LedgerTxn,
    pub at: DateTime<Utc>,
}

/// A campaign's money, read in one snapshot: totals by movement kind and the balances of
/// its accounts, all in the campaign's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignMoney {
    pub campaign_id: CampaignId,
    pub currency: Currency,
    /// Every deposit ever held (sum of `hold` movements).
    pub deposited: i64,
    /// Deposits held now (balance of `holds:<campaign>`).
    pub held: i64,
    /// Deposits captured at lock (sum of `capture`).
    pub captured: i64,
    /// Deposits released in full (sum of `release`): what consumers got back.
    pub released: i64,
    /// Balances paid (sum of `balance`).
    pub balances_paid: i64,
    /// Balances due and not yet paid or forfeited.
    pub balances_outstanding: i64,
    /// Deposits forfeited to the merchant (sum of `forfeit`).
    pub forfeited: i64,
    /// Paid units settled to the merchant (sum of `settle`).
    pub settled: i64,
    /// Captured money not yet paid out (balance of `escrow:<campaign>`).
    pub escrow: i64,
    /// What the merchant has earned (balance of `merchant:<campaign>`).
    pub merchant: i64,
    /// Captured deposits and paid balances given back because the campaign was cancelled
    /// (sum of `refund`).
    #[serde(default)]
    pub refunded: i64,
    /// The part of `refunded` taken back from the merchant (batches that had settled).
    #[serde(default)]
    pub refunded_by_merchant: i64,
}

impl CampaignMoney {
    /// The accounting identities that must hold at every moment; returns the first that
    /// does not, in words.
    pub fn check(&self) -> Result<(), String> {
        let rules = [
            (
                "deposited = held + captured + released",
                self.deposited,
                self.held + self.captured + self.released,
            ),
            (
                "escrow = captured + balances paid - forfeited - settled - refunded from escrow",
                self.escrow,
                self.captured + self.balances_paid
                    - self.forfeited
                    - self.settled
                    - (self.refunded - self.refunded_by_merchant),
            ),
            (
                "merchant = forfeited + settled - refunded by the merchant",
                self.merchant,
                self.forfeited + self.settled - self.refunded_by_merchant,
            ),
        ];
        for (rule, left, right) in rules {
            if left != right {
                return Err(format!("{rule}: {left} != {right}"));
            }
        }
        Ok(())
    }
}

/// The state of a pre-order's deposit hold. It starts `Held` and is resolved exactly once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    #[default]
    Held,
    /// Taken into escrow when the batch locked.
    Captured,
    /// Given back in full (cancelled while open, or the batch failed).
    Released,
}

impl HoldState {
    pub fn as_str(&self) -> &'static str {
        match self {
            HoldState::Held => "held",
            HoldState::Captured => "captured",
            HoldState::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Option<HoldState> {
        match s {
            "held" => Some(HoldState::Held),
            "captured" => Some(HoldState::Captured),
            "released" => Some(HoldState::Released),
            _ => None,
        }
    }

    /// `Held → Captured`; refuses a hold that was already resolved.
    pub fn capture(self) -> Result<HoldState, DomainError> {
        self.resolve(HoldState::Captured)
    }

    /// `Held → Released`; refuses a hold that was already resolved.
    pub fn release(self) -> Result<HoldState, DomainError> {
        self.resolve(HoldState::Released)
    }

    fn resolve(self, to: HoldState) -> Result<HoldState, DomainError> {
        match self {
            HoldState::Held => Ok(to),
            done => Err(Refusal::HoldAlreadyResolved {
                was: done.as_str(),
                to: to.as_str(),
            }
            .into()),
        }
    }
}

/// Where a pre-order's money stands, derived from its hold and balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoneyState {
    /// The deposit is held while the batch pools.
    DepositHeld,
    /// The deposit was released in full (cancelled, or the batch failed).
    DepositReleased,
    /// The deposit was captured; the balance is due by the batch's balance deadline.
    BalanceDue,
    /// Everything owed is paid (balance paid, or nothing was left to pay).
    Paid,
    /// The balance was not paid in time; the deposit went to the merchant.
    Forfeited,
    /// The merchant cancelled the campaign: the captured deposit and any paid balance came
    /// back in full.
    Refunded,
}

/// The balance a pre-order owes once its batch locks at `final_unit_price`: the full price
/// of its units minus the deposit already captured. Never negative, because every price of
/// the ladder is at least the deposit per unit.
pub fn balance_due(
    quantity: i64,
    final_unit_price: Money,
    deposit_total: Money,
) -> Result<Money, DomainError> {
    let full = final_unit_price.times(quantity, "quantity")?;
    let due = full
        .checked_sub(deposit_total)
        .ok_or_else(|| DomainError::invalid("deposit_total", "currency or overflow mismatch"))?;
    if due.minor < 0 {
        return Err(Refusal::DepositExceedsPrice {
            deposit: deposit_total,
            full,
        }
        .into());
    }
    Ok(due)
}

/// Whether `amount` may be paid now as the balance of `preorder`, whose status and money
/// were read under the campaign's lock; returns the amount to move. Refusals say what is
/// wrong: the state (`FailedPrecondition`: cancelled, not locked, failed, forfeited,
/// already paid, window closed) before the amount (`InvalidArgument` naming
/// `amount.currency` or `amount.minor`), since no amount can fix a wrong state.
pub fn check_balance_payment(
    preorder: &crate::Preorder,
    amount: Money,
    now: DateTime<Utc>,
) -> Result<Money, DomainError> {
    use crate::PreorderStatus as S;
    match preorder.status {
        S::Cancelled => return Err(Refusal::PreorderCancelled.into()),
        S::Pooled => return Err(Refusal::BatchNotLocked.into()),
        S::RefundDue => return Err(Refusal::BatchFailed.into()),
        S::Forfeited => return Err(Refusal::DepositForfeited.into()),
        S::Locked => {}
    }
    let m = &preorder.money;
    if m.balance_paid_at.is_some() {
        return Err(Refusal::BalanceAlreadyPaid.into());
    }
    if let Some(by) = m.balance_due_by {
        if now >= by {
            return Err(Refusal::BalanceWindowClosed { closed_at: by }.into());
        }
    }
    let due = m.balance_due.ok_or(Refusal::BatchNotLocked)?;
    if amount.currency != due.currency {
        return Err(DomainError::invalid(
            "amount.currency",
            format!(
                "the balance is due in {}, not {}",
                due.currency, amount.currency
            ),
        ));
    }
    if amount.minor != due.minor {
        return Err(DomainError::invalid(
            "amount.minor",
            format!(
                "the balance due is exactly {} minor units, not {}",
                due.minor, amount.minor
            ),
        ));
    }
    Ok(due)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cny(minor: i64) -> Money {
        Money::new(minor, Currency::parse("CNY").unwrap())
    }

    fn consumer() -> Account {
        Account::Consumer(ConsumerId::parse("con_a").unwrap())
    }

    fn holds() -> Account {
        Account::Holds(CampaignId::parse("cmp_1").unwrap())
    }

    #[test]
    fn transfers_balance_and_unbalanced_transactions_cannot_be_built() {
        let t = LedgerTxn::transfer(TxnKind::Hold, consumer(), holds(), cny(500)).unwrap();
        assert_eq!(t.postings().iter().map(|p| p.amount).sum::<i64>(), 0);
        assert_eq!(t.amount(), cny(500));
        let cur = Currency::parse("CNY").unwrap();
        let unbalanced = LedgerTxn::new(
            TxnKind::Hold,
            cur,
            vec![
                Posting {
                    account: consumer(),
                    amount: -500,
                },
                Posting {
                    account: holds(),
                    amount: 499,
                },
            ],
        );
        assert!(unbalanced.is_err());
        assert!(LedgerTxn::new(TxnKind::Hold, cur, vec![]).is_err());
        assert!(LedgerTxn::transfer(TxnKind::Hold, consumer(), holds(), cny(0)).is_err());
        assert!(LedgerTxn::transfer(TxnKind::Hold, consumer(), holds(), cny(-1)).is_err());
        let overflow = LedgerTxn::new(
            TxnKind::Hold,
            cur,
            vec![
                Posting {
                    account: consumer(),
                    amount: i64::MAX,
                },
                Posting {
                    account: holds(),
                    amount: i64::MAX,
                },
            ],
        );
        assert!(overflow.is_err());
        let same_account = LedgerTxn::new(
            TxnKind::Hold,
            cur,
            vec![
                Posting {
                    account: holds(),
                    amount: -1,
                },
                Posting {
                    account: holds(),
                    amount: 1,
                },
            ],
        );
        assert!(same_account.is_err());
    }

    #[test]
    fn account_codes_round_trip() {
        for a in [
            consumer(),
            holds(),
            Account::Escrow(CampaignId::parse("cmp_2").unwrap()),
            Account::Merchant(CampaignId::parse("cmp_3").unwrap()),
        ] {
            assert_eq!(Account::parse(&a.code()), Some(a));
        }
        assert_eq!(Account::parse("bank:x"), None);
        assert_eq!(Account::parse("holds:"), None);
    }

    #[test]
    fn a_hold_resolves_exactly_once() {
        assert_eq!(HoldState::Held.capture().unwrap(), HoldState::Captured);
        assert_eq!(HoldState::Held.release().unwrap(), HoldState::Released);
        assert!(HoldState::Captured.release().is_err());
        assert!(HoldState::Captured.capture().is_err());
        assert!(HoldState::Released.capture().is_err());
        assert!(HoldState::Released.release().is_err());
    }

    #[test]
    fn a_balance_payment_must_be_due_open_and_exact() {
        use crate::{BatchId, Preorder, PreorderId, PreorderMoney, PreorderStatus};
        let now = chrono::Utc::now();
        let locked = Preorder {
            id: PreorderId::parse("po_1").unwrap(),
            campaign_id: CampaignId::parse("cmp_1").unwrap(),
            consumer_id: ConsumerId::parse("con_a").unwrap(),
            batch_id: BatchId::parse("bat_1").unwrap(),
            batch_seq: 1,
            quantity: 2,
            unit_price: cny(39_900),
            deposit_total: cny(10_000),
            status: PreorderStatus::Locked,
            created_at: now,
            cancelled_at: None,
            money: PreorderMoney {
                hold: HoldState::Captured,
                final_unit_price: Some(cny(36_900)),
                balance_due: Some(cny(63_800)),
                balance_due_by: Some(now + chrono::Duration::hours(1)),
                balance_paid_at: None,
                forfeited_at: None,
                refunded_at: None,
            },
        };
        assert_eq!(
            check_balance_payment(&locked, cny(63_800), now),
            Ok(cny(63_800))
        );
        let field = |r: Result<Money, DomainError>| match r {
            Err(DomainError::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(check_balance_payment(&locked, cny(63_799), now)),
            "amount.minor"
        );
        let usd = Money::new(63_800, Currency::parse("USD").unwrap());
        assert_eq!(
            field(check_balance_payment(&locked, usd, now)),
            "amount.currency"
        );
        let late = now + chrono::Duration::hours(1);
        assert!(matches!(
            check_balance_payment(&locked, cny(63_800), late),
            Err(DomainError::Refused(Refusal::BalanceWindowClosed { .. }))
        ));
        for (status, reason) in [
            (PreorderStatus::Pooled, "BATCH_NOT_LOCKED"),
            (PreorderStatus::Cancelled, "PREORDER_CANCELLED"),
            (PreorderStatus::RefundDue, "BATCH_FAILED"),
            (PreorderStatus::Forfeited, "DEPOSIT_FORFEITED"),
        ] {
            let p = Preorder {
                status,
                ..locked.clone()
            };
            assert_eq!(
                check_balance_payment(&p, cny(63_800), now)
                    .unwrap_err()
                    .reason(),
                reason
            );
        }
        let mut paid = locked.clone();
        paid.money.balance_paid_at = Some(now);
        assert!(matches!(
            check_balance_payment(&paid, cny(63_800), now),
            Err(DomainError::Refused(Refusal::BalanceAlreadyPaid))
        ));
    }

    #[test]
    fn balance_is_full_price_minus_deposit() {
        assert_eq!(
            balance_due(3, cny(36_900), cny(15_000)).unwrap(),
            cny(95_700)
        );
        assert_eq!(balance_due(2, cny(5_000), cny(10_000)).unwrap(), cny(0));
        assert!(balance_due(2, cny(4_000), cny(10_000)).is_err());
        assert!(balance_due(i64::MAX, cny(2), cny(1)).is_err());
    }
}
