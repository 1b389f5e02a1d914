//! The payment provider: what happens outside the ledger when money moves.
//!
//! Every money movement is first of all a ledger transaction, written by the store in the
//! same database transaction as the pooling change that causes it. The provider is asked,
//! inside that transaction and before it commits, about each movement. It must not do I/O
//! there (a network call inside a database transaction would hold the campaign's lock for
//! the length of the call, and the call could succeed while the transaction rolls back).
//!
//! - [`LedgerOnly`], the built-in provider, needs nothing outside the ledger: the service
//!   works with no payment system at all.
//! - A real gateway would answer each call with the instruction to send (authorise, capture,
//!   void, charge, pay out); the store would write it to an outbox table in the same
//!   transaction, and a worker would send it after commit, retrying with the ledger
//!   transaction's id as the gateway's idempotency key. Adding one touches this module and
//!   the outbox, not the pooling code.

use c2m_domain::{DomainError, LedgerTxn};

/// A payment system behind the ledger.
pub trait PaymentProvider: Send + Sync + 'static {
    /// For logs and the money summary.
    fn name(&self) -> &'static str;

    /// Called with each movement just recorded; an error refuses the movement and rolls the
    /// whole store call back. What the payment system is asked to do is the movement's
    /// [`LedgerTxn::kind`]:
    ///
    /// - `Hold`: a deposit is authorised and held on the consumer's payment method;
    /// - `Capture`: a held deposit is captured (the batch locked);
    /// - `Release`: a held deposit is released in full (cancel, or the batch failed);
    /// - `Balance`: the consumer pays the balance (a charge);
    /// - `Forfeit`, `Settle`: captured money goes to the merchant (a pay-out);
    /// - `Refund`: captured money (deposit and paid balance) goes back to the consumer: the
    ///   merchant cancelled the campaign.
    fn movement(&self, movement: &LedgerTxn) -> Result<(), DomainError>;
}

/// The built-in provider: the ledger is the whole record; nothing is sent anywhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct LedgerOnly;

impl PaymentProvider for LedgerOnly {
    fn name(&self) -> &'static str {
        "ledger-only"
    }

    fn movement(&self, _: &LedgerTxn) -> Result<(), DomainError> {
        Ok(())
    }
}
