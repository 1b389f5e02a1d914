//! Money as integer minor units with its currency.
//!
//! Floats never appear on the money path: a deposit of 39.90 CNY is `3990` fen. Arithmetic
//! is checked, because an overflow in a ledger is a bug we want to see as an error, not a
//! wrapped balance.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// Active ISO 4217 alphabetic codes. A typo such as `CYN` must be rejected, not stored as a
/// currency nobody can pay in.
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWL",
];

/// An ISO 4217 currency code, valid by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(code: &str) -> Result<Self, DomainError> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(|b| b.is_ascii_uppercase()) {
            return Err(DomainError::invalid(
                "currency",
                format!("{code:?} is not a three-letter upper-case ISO 4217 code"),
            ));
        }
        if !ISO_4217.contains(&code) {
            return Err(DomainError::invalid(
                "currency",
                format!("{code:?} is not an ISO 4217 currency"),
            ));
        }
        Ok(Currency([bytes[0], bytes[1], bytes[2]]))
    }

    pub fn as_str(&self) -> &str {
        // The bytes were checked to be ASCII upper-case letters in `parse`.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// How many digits of a major unit the minor unit is (ISO 4217's exponent): 2 for
    /// most (100 fen to the yuan), 0 where there is no minor unit in use (yen, won), 3
    /// for the dinars that count in thousandths. What turns stored minor units into an
    /// amount people read.
    pub fn minor_digits(&self) -> u32 {
        match self.as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF"
            | "UGX" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            _ => 2,
        }
    }
}

impl FromStr for Currency {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Currency::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount in minor units (cents, fen) of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Money { minor, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Money { minor: 0, currency }
    }

    /// `self * n`, or an error naming `what` when the product does not fit in i64.
    pub fn times(self, n: i64, what: &str) -> Result<Money, DomainError> {
        self.minor
            .checked_mul(n)
            .map(|minor| Money {
                minor,
                currency: self.currency,
            })
            .ok_or_else(|| DomainError::invalid(what, "amount overflows 64-bit minor units"))
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        self.minor.checked_add(other.minor).map(|minor| Money {
            minor,
            currency: self.currency,
        })
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        self.minor.checked_sub(other.minor).map(|minor| Money {
            minor,
            currency: self.currency,
        })
    }
}

/// The amount as people read it, in major units with the currency's minor digits:
/// `321.75 CNY` for 32175 fen, `1200 JPY`, `-0.05 EUR`. (Messages quote money this way;
/// machine-readable fields carry minor units.)
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.currency.minor_digits();
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        let scale = 10u64.pow(digits);
        let (major, fraction) = (abs / scale, abs % scale);
        if digits == 0 {
            write!(f, "{sign}{major} {}", self.currency)
        } else {
            let width = digits as usize;
            write!(f, "{sign}{major}.{fraction:0width$} {}", self.currency)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_reads_in_major_units_with_the_currency_s_digits() {
        let m = |minor, c| Money::new(minor, Currency::parse(c).unwrap()).to_string();
        assert_eq!(m(32175, "CNY"), "321.75 CNY");
        assert_eq!(m(5, "EUR"), "0.05 EUR");
        assert_eq!(m(-5, "EUR"), "-0.05 EUR");
        assert_eq!(m(-32175, "CNY"), "-321.75 CNY");
        assert_eq!(m(1200, "JPY"), "1200 JPY");
        assert_eq!(m(1500, "KWD"), "1.500 KWD");
        assert_eq!(m(i64::MIN, "USD"), "-92233720368547758.08 USD");
        assert_eq!(m(i64::MAX, "USD"), "92233720368547758.07 USD");
    }

    #[test]
    fn currency_accepts_iso_codes_only() {
        assert_eq!(Currency::parse("CNY").unwrap().as_str(), "CNY");
        assert!(Currency::parse("cny").is_err());
        assert!(Currency::parse("CYN").is_err());
        assert!(Currency::parse("CNYY").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn money_arithmetic_is_checked_and_same_currency() {
        let cny = Currency::parse("CNY").unwrap();
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(
            Money::new(5, cny).checked_add(Money::new(7, cny)),
            Some(Money::new(12, cny))
        );
        assert_eq!(Money::new(5, cny).checked_add(Money::new(7, usd)), None);
        assert!(Money::new(i64::MAX, cny).times(2, "deposit").is_err());
        assert_eq!(
            Money::new(3990, cny).times(3, "deposit").unwrap().minor,
            11970
        );
    }
}
