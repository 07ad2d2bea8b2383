//! `pii`: finds e-mail addresses, IP addresses, phone numbers, IBANs and
//! payment card numbers, counts them per document, and in `redact` mode
//! replaces each with a typed placeholder (`<EMAIL>`, `<IP>`, `<PHONE>`,
//! `<IBAN>`, `<CARD>`).
//!
//! Candidates come from regexes; what makes them PII is checked in code, to
//! keep false positives out of training text that is full of numbers:
//! IBANs pass the ISO 13616 mod-97 check and their country's length, card
//! numbers the Luhn check and an issuer prefix, IPv4 addresses must be
//! public (not private, loopback, link-local or reserved) and not read as a
//! version (`v1.2.3.4`, `version 10.0.0.1`, `2.6.32.1.5`), IPv6 addresses
//! must parse, and phone numbers must be international (`+` and 8 to 15
//! digits, E.164) or in the `(0xx) xxx-xxxx` form. Other than
//! `normalize`, this is the only stage that changes text; `pii_redacted`
//! says how many spans it replaced, and each document it changed gets a
//! ledger row of kind `modified` (reason `pii_redacted`, the spans per kind
//! and the sizes before and after in `detail`).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{StringBuilder, UInt32Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{BuildContext, Drop, Mode, Stage, StageError, StageOutput, StageSpec};
use crate::batch::Core;
use crate::ledger::Reason;

/// The kinds of PII the stage knows, in the order they are looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Iban,
    Card,
    Ip,
    Phone,
}

impl PiiKind {
    pub const ALL: [PiiKind; 5] = [
        PiiKind::Email,
        PiiKind::Iban,
        PiiKind::Card,
        PiiKind::Ip,
        PiiKind::Phone,
    ];

    fn column(self) -> &'static str {
        match self {
            PiiKind::Email => "pii_email",
            PiiKind::Iban => "pii_iban",
            PiiKind::Card => "pii_card",
            PiiKind::Ip => "pii_ip",
            PiiKind::Phone => "pii_phone",
        }
    }

    /// The name manifests use (`kinds = ["email", ...]`).
    fn name(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Iban => "iban",
            PiiKind::Card => "card",
            PiiKind::Ip => "ip",
            PiiKind::Phone => "phone",
        }
    }

    fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "<EMAIL>",
            PiiKind::Iban => "<IBAN>",
            PiiKind::Card => "<CARD>",
            PiiKind::Ip => "<IP>",
            PiiKind::Phone => "<PHONE>",
        }
    }
}

/// `annotate` counts; `redact` also replaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiMode {
    Annotate,
    #[default]
    Redact,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiConfig {
    #[serde(default)]
    pub mode: PiiMode,
    /// Which kinds to look for (default: all).
    #[serde(default = "all_kinds")]
    pub kinds: Vec<PiiKind>,
}

fn all_kinds() -> Vec<PiiKind> {
    PiiKind::ALL.to_vec()
}

impl Default for PiiConfig {
    fn default() -> Self {
        PiiConfig {
            mode: PiiMode::default(),
            kinds: all_kinds(),
        }
    }
}

impl PiiConfig {
    pub fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        if self.kinds.is_empty() {
            return vec![(Some("kinds"), "`kinds` is empty".into())];
        }
        Vec::new()
    }
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,24}\b")
        .expect("valid regex")
});
static IBAN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
        .expect("valid regex")
});
static CARD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b[0-9](?:[ -]?[0-9]){12,18}\b").expect("valid regex"));
static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\b").expect("valid regex")
});
static IPV6: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}").expect("valid regex"));
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\+[0-9][0-9 .()-]{6,20}[0-9]|\([0-9]{2,4}\) ?[0-9]{3,4}[ -][0-9]{3,4}\b")
        .expect("valid regex")
});

/// IBAN lengths by country (ISO 13616 registry, SEPA and neighbours).
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FO" | "GL" | "NL" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "XK" => 20,
        "CH" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" => 22,
        "AE" | "GI" | "IL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "PT" => 25,
        "IS" | "TR" => 26,
        "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "CY" | "DO" | "GT" | "HU" | "LB" | "PL" => 28,
        "BR" | "PS" | "QA" | "UA" => 29,
        "JO" | "KW" | "MU" => 30,
        "MT" => 31,
        _ => return None,
    })
}

/// ISO 13616: the country's length, and the number mod 97 is 1.
pub fn valid_iban(s: &str) -> bool {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if s.len() < 15 || iban_length(&s[..2]) != Some(s.len()) {
        return false;
    }
    let mut rem: u32 = 0;
    for c in s[4..].chars().chain(s[..4].chars()) {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// The Luhn check, and a prefix an issuer uses (Visa, Mastercard, Amex,
/// Discover/UnionPay, Diners, JCB).
pub fn valid_card(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let issuer = match digits[0] {
        4 => true,
        5 => (1..=5).contains(&digits[1]),
        2 => (2..=7).contains(&digits[1]),
        3 => matches!(digits[1], 4 | 5 | 6 | 7 | 8 | 0),
        6 => true,
        _ => false,
    };
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    issuer && sum.is_multiple_of(10)
}

/// A public IPv4 address that is not written as part of a version.
fn valid_ipv4(text: &str, start: usize, end: usize) -> bool {
    let Ok(ip) = text[start..end].parse::<Ipv4Addr>() else {
        return false;
    };
    let o = ip.octets();
    let public = !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || o[0] == 0
        || o[0] >= 240
        || (o[0] == 100 && (64..128).contains(&o[1])));
    // `2.6.32.1.5`, `1.2.3.4-rc1`: part of a longer dotted number.
    let after = text[end..].chars().next();
    let dotted_on = text[end..].starts_with('.')
        && text[end + 1..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit());
    let before = text[..start].chars().next_back();
    let joined = |c: char| c.is_alphanumeric() || c == '-' || c == '_';
    if dotted_on || before == Some('.') || after.is_some_and(joined) {
        return false;
    }
    // `v1.2.3.4`, `version 10.20.30.40`, `release 4.4.0.1`.
    let lead = text[..start].trim_end().to_lowercase();
    let versioned = before.is_some_and(|c| c == 'v' || c == 'V')
        || [
            "version", "versión", "versió", "release", "v.", "ver.", "build", "kernel", "firmware",
        ]
        .iter()
        .any(|w| lead.ends_with(w));
    public && !versioned
}

fn valid_ipv6(s: &str) -> bool {
    s.matches(':').count() >= 2
        && s.chars().filter(|c| c.is_ascii_hexdigit()).count() >= 3
        && s.parse::<Ipv6Addr>().is_ok()
}

fn valid_phone(s: &str) -> bool {
    let digits = s.chars().filter(|c| c.is_ascii_digit()).count();
    if s.starts_with('+') {
        (8..=15).contains(&digits)
    } else {
        (9..=11).contains(&digits)
    }
}

/// PII spans found in `text`: (start, end, kind), sorted, not overlapping
/// (an earlier kind in [`PiiKind::ALL`] wins an overlap).
pub fn find(text: &str, kinds: &[PiiKind]) -> Vec<(usize, usize, PiiKind)> {
    let mut spans: Vec<(usize, usize, PiiKind)> = Vec::new();
    let add = |s: usize, e: usize, k: PiiKind, spans: &mut Vec<(usize, usize, PiiKind)>| {
        if !spans.iter().any(|&(a, b, _)| s < b && a < e) {
            spans.push((s, e, k));
        }
    };
    for &k in &PiiKind::ALL {
        if !kinds.contains(&k) {
            continue;
        }
        match k {
            PiiKind::Email => {
                for m in EMAIL.find_iter(text) {
                    add(m.start(), m.end(), k, &mut spans);
                }
            }
            PiiKind::Iban => {
                for m in IBAN.find_iter(text) {
                    if valid_iban(m.as_str()) {
                        add(m.start(), m.end(), k, &mut spans);
                    }
                }
            }
            PiiKind::Card => {
                for m in CARD.find_iter(text) {
                    if valid_card(m.as_str()) {
                        add(m.start(), m.end(), k, &mut spans);
                    }
                }
            }
            PiiKind::Ip => {
                for m in IPV4.find_iter(text) {
                    if valid_ipv4(text, m.start(), m.end()) {
                        add(m.start(), m.end(), k, &mut spans);
                    }
                }
                for m in IPV6.find_iter(text) {
                    if valid_ipv6(m.as_str()) {
                        add(m.start(), m.end(), k, &mut spans);
                    }
                }
            }
            PiiKind::Phone => {
                for m in PHONE.find_iter(text) {
                    if valid_phone(m.as_str()) {
                        add(m.start(), m.end(), k, &mut spans);
                    }
                }
            }
        }
    }
    spans.sort_unstable();
    spans
}

pub struct Pii {
    config: PiiConfig,
}

impl Pii {
    pub fn new(config: PiiConfig) -> Self {
        Pii { config }
    }
}

impl Stage for Pii {
    fn name(&self) -> &'static str {
        <PiiConfig as StageSpec>::TYPE
    }

    /// It never drops a document (its ledger rows are of kind `modified`).
    fn mode(&self) -> Mode {
        Mode::Annotate
    }

    fn fields(&self) -> Vec<Field> {
        let mut f: Vec<Field> = PiiKind::ALL
            .iter()
            .map(|k| Field::new(k.column(), DataType::UInt32, false))
            .collect();
        f.push(Field::new("pii_redacted", DataType::UInt32, false));
        f
    }

    fn process(&self, batch: &RecordBatch) -> Result<StageOutput, StageError> {
        let text = Core::of(batch).text;
        let n = batch.num_rows();
        let mut counts: Vec<UInt32Builder> = PiiKind::ALL
            .iter()
            .map(|_| UInt32Builder::with_capacity(n))
            .collect();
        let mut redacted = UInt32Builder::with_capacity(n);
        let redact = self.config.mode == PiiMode::Redact;
        let mut out = redact.then(|| StringBuilder::with_capacity(n, text.value_data().len()));
        let mut buf = String::new();
        let mut edits = Vec::new();
        for row in 0..n {
            let t = text.value(row);
            let spans = find(t, &self.config.kinds);
            for (i, k) in PiiKind::ALL.iter().enumerate() {
                counts[i].append_value(spans.iter().filter(|s| s.2 == *k).count() as u32);
            }
            match &mut out {
                Some(o) => {
                    buf.clear();
                    let mut at = 0;
                    for &(s, e, k) in &spans {
                        buf.push_str(&t[at..s]);
                        buf.push_str(k.placeholder());
                        at = e;
                    }
                    buf.push_str(&t[at..]);
                    o.append_value(&buf);
                    redacted.append_value(spans.len() as u32);
                    if !spans.is_empty() {
                        edits.push(Drop {
                            row,
                            reason: Reason::PiiRedacted,
                            detail: edit_detail(&spans, t.len(), buf.len()),
                        });
                    }
                }
                None => redacted.append_value(0),
            }
        }
        let mut columns: Vec<ArrayRef> = counts
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        columns.push(Arc::new(redacted.finish()));
        Ok(StageOutput {
            text: out.map(|mut o| Arc::new(o.finish()) as ArrayRef),
            columns,
            drops: edits,
            scan: None,
        })
    }
}

/// What a redaction did, for the ledger: `3 spans (email 1, iban 1,
/// phone 1), 95 -> 46 bytes`.
fn edit_detail(spans: &[(usize, usize, PiiKind)], from: usize, to: usize) -> String {
    let kinds: Vec<String> = PiiKind::ALL
        .iter()
        .filter_map(|k| {
            let n = spans.iter().filter(|s| s.2 == *k).count();
            (n > 0).then(|| format!("{} {n}", k.name()))
        })
        .collect();
    format!(
        "{} span{} ({}), {from} -> {to} bytes",
        spans.len(),
        if spans.len() == 1 { "" } else { "s" },
        kinds.join(", ")
    )
}

impl StageSpec for PiiConfig {
    const TYPE: &'static str = "pii";

    fn problems(&self) -> Vec<(Option<&'static str>, String)> {
        PiiConfig::problems(self)
    }

    fn adds(&self) -> Vec<&'static str> {
        {
            let mut names: Vec<&'static str> = PiiKind::ALL.iter().map(|k| k.column()).collect();
            names.push("pii_redacted");
            names
        }
    }

    fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Stage>, StageError> {
        let _ = ctx;
        Ok(Box::new(Pii::new(self.clone())))
    }

    fn example() -> Self {
        PiiConfig {
            mode: PiiMode::Annotate,
            kinds: vec![PiiKind::Iban, PiiKind::Card],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::CoreBuilder;

    fn kinds(text: &str) -> Vec<(&str, PiiKind)> {
        find(text, &PiiKind::ALL)
            .into_iter()
            .map(|(s, e, k)| (&text[s..e], k))
            .collect()
    }

    #[test]
    fn kind_names_are_the_manifest_names() {
        for k in PiiKind::ALL {
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.name())
            );
        }
    }

    #[test]
    fn ibans_pass_mod_97_and_their_countrys_length() {
        // Published example IBANs (valid check digits).
        for ok in [
            "ES91 2100 0418 4502 0005 1332",
            "DE89370400440532013000",
            "GB82 WEST 1234 5698 7654 32",
            "FR1420041010050500013M02606",
        ] {
            assert!(valid_iban(ok), "{ok}");
        }
        // One digit changed, a wrong length, an unknown country.
        for bad in [
            "ES91 2100 0418 4502 0005 1333",
            "DE8937040044053201300",
            "XX89370400440532013000",
        ] {
            assert!(!valid_iban(bad), "{bad}");
        }
        let t = "Pagueu a ES91 2100 0418 4502 0005 1332 abans del dia 5; ES91 2100 0418 4502 0005 1333 no.";
        assert_eq!(
            kinds(t),
            vec![("ES91 2100 0418 4502 0005 1332", PiiKind::Iban)]
        );
    }

    #[test]
    fn card_numbers_pass_luhn_and_an_issuer_prefix() {
        for ok in [
            "4111 1111 1111 1111",
            "5500-0000-0000-0004",
            "378282246310005",
        ] {
            assert!(valid_card(ok), "{ok}");
        }
        // Luhn fails; Luhn passes but no issuer starts with 9; too short.
        for bad in ["4111 1111 1111 1112", "9111111111111115", "4111 1111 111"] {
            assert!(!valid_card(bad), "{bad}");
        }
        // An ISBN-13 and an order number are left alone.
        let t = "Card 4111-1111-1111-1111, ISBN 9780306406157, order 1234567890123.";
        assert_eq!(kinds(t), vec![("4111-1111-1111-1111", PiiKind::Card)]);
    }

    #[test]
    fn public_ips_are_found_and_versions_and_private_ranges_are_not() {
        let t = "Server 81.2.69.160 and 2001:db8::ff00:42:8329 answered; \
                 the LAN is 192.168.1.1, localhost 127.0.0.1; \
                 Linux 2.6.32.1.5, v1.2.3.4, version 10.20.30.40, kernel 4.19.0.16, \
                 time 12:30:45, and 3.14.15.92-rc1.";
        assert_eq!(
            kinds(t),
            vec![
                ("81.2.69.160", PiiKind::Ip),
                ("2001:db8::ff00:42:8329", PiiKind::Ip)
            ]
        );
    }

    #[test]
    fn emails_and_international_phones() {
        let t = "Escriu a maria.puig+bsc@example.cat o truca al +34 93 123 45 67 \
                 o al (555) 123-4567; l'any 2024-2025 i el preu 12.500 no ho són.";
        assert_eq!(
            kinds(t),
            vec![
                ("maria.puig+bsc@example.cat", PiiKind::Email),
                ("+34 93 123 45 67", PiiKind::Phone),
                ("(555) 123-4567", PiiKind::Phone)
            ]
        );
    }

    #[test]
    fn redact_mode_replaces_and_counts_annotate_only_counts() {
        let mut b = CoreBuilder::with_capacity(2, 100);
        b.push(
            "s",
            "f",
            1,
            "Mail bob@example.org, card 4111 1111 1111 1111.",
            None,
            None,
        );
        b.push("s", "f", 2, "Nothing here but 2.6.32.", None, None);
        let batch = b.finish();
        let out = Pii::new(PiiConfig::default()).process(&batch).unwrap();
        let text = out.text.unwrap();
        let text = text
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        assert_eq!(text.value(0), "Mail <EMAIL>, card <CARD>.");
        assert_eq!(text.value(1), "Nothing here but 2.6.32.");
        let col = |i: usize| {
            out.columns[i]
                .as_any()
                .downcast_ref::<arrow_array::UInt32Array>()
                .unwrap()
                .values()
                .to_vec()
        };
        assert_eq!(col(0), vec![1, 0]); // email
        assert_eq!(col(2), vec![1, 0]); // card
        assert_eq!(col(5), vec![2, 0]); // redacted
        let ann = Pii::new(PiiConfig {
            mode: PiiMode::Annotate,
            ..Default::default()
        })
        .process(&batch)
        .unwrap();
        assert!(ann.text.is_none());
        assert_eq!(
            ann.columns[0]
                .as_any()
                .downcast_ref::<arrow_array::UInt32Array>()
                .unwrap()
                .value(0),
            1
        );
    }
}
