//! The firewall's rule model: what an operator writes (in the ruleset file,
//! the API, the database) and its validation. Independent of how the XDP
//! program classifies (`compile`) and of storage (`store`).
//!
//! Semantics (the reference classifier in `reference` is their executable
//! form): rules of a chain are tried in order; a rule matches when every
//! field it sets matches; the first match decides; no match means the
//! chain's policy. Disabled rules are kept but never match.
use std::{collections::BTreeSet, fmt, str::FromStr};

use dataplane_common::{
    CT_STATE_ESTABLISHED, CT_STATE_INVALID, CT_STATE_NEW, CT_STATE_RELATED, CT_STATE_UNTRACKED,
    FW_ACCEPT, FW_DROP, FW_MAX_RULES, FW_REJECT,
};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        KnownFormat, ObjectBuilder, OneOfBuilder, RefOr, Schema, SchemaFormat, Type,
        schema::AnyOfBuilder,
    },
};

/// Where a rule applies.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    /// Packets routed through the box.
    Forward,
    /// Packets for one of the box's own addresses, before the kernel sees them.
    Input,
}

impl Chain {
    pub const ALL: [Chain; 2] = [Chain::Forward, Chain::Input];

    pub fn index(self) -> u32 {
        match self {
            Chain::Forward => dataplane_common::CHAIN_FORWARD,
            Chain::Input => dataplane_common::CHAIN_INPUT,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Chain::Forward => "forward",
            Chain::Input => "input",
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Chain {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "forward" => Ok(Chain::Forward),
            "input" => Ok(Chain::Input),
            _ => Err(format!("unknown chain {s:?} (forward or input)")),
        }
    }
}

/// What a matching rule (or a chain policy) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    Drop,
    /// TCP RST for TCP, ICMP / ICMPv6 port unreachable otherwise.
    Reject,
}

impl Verdict {
    pub fn code(self) -> u32 {
        match self {
            Verdict::Accept => FW_ACCEPT,
            Verdict::Drop => FW_DROP,
            Verdict::Reject => FW_REJECT,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Drop => "drop",
            Verdict::Reject => "reject",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A source or destination match: one prefix, or a named address set
/// (written `@name`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AddrMatch {
    Prefix(IpNet),
    Set(String),
}

impl FromStr for AddrMatch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(name) = s.strip_prefix('@') {
            validate_set_name(name)?;
            return Ok(AddrMatch::Set(name.to_string()));
        }
        parse_prefix(s).map(AddrMatch::Prefix)
    }
}

impl TryFrom<String> for AddrMatch {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<AddrMatch> for String {
    fn from(a: AddrMatch) -> String {
        a.to_string()
    }
}

impl fmt::Display for AddrMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrMatch::Prefix(p) => write!(f, "{p}"),
            AddrMatch::Set(name) => write!(f, "@{name}"),
        }
    }
}

/// A prefix without host bits (`198.18.1.0/24`), or a bare address (a /32
/// or /128). Host bits are refused rather than silently masked: a typo in
/// a firewall rule should not widen or move it.
pub fn parse_prefix(s: &str) -> Result<IpNet, String> {
    let net: IpNet = match s.parse() {
        Ok(n) => n,
        Err(_) => match s.parse::<std::net::IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_) => return Err(format!("{s:?} is not an IPv4/IPv6 prefix or address")),
        },
    };
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set (did you mean {}?)",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Set names: letters, digits, `-`, `_`, `.`; up to 64 characters.
pub fn validate_set_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "set name {name:?} must be 1-64 characters of letters, digits, '-', '_' or '.'"
        ))
    }
}

/// An IP protocol: a name (`tcp`, `udp`, `icmp`, `icmpv6`, ...) or a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ProtoRepr", into = "String")]
pub struct Proto(pub u8);

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

const PROTO_NAMES: [(&str, u8); 9] = [
    ("icmp", PROTO_ICMP),
    ("tcp", PROTO_TCP),
    ("udp", PROTO_UDP),
    ("icmpv6", PROTO_ICMPV6),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("sctp", 132),
    ("ipv6-icmp", PROTO_ICMPV6),
];

#[derive(Deserialize)]
#[serde(untagged)]
enum ProtoRepr {
    Number(u64),
    Text(String),
}

impl TryFrom<ProtoRepr> for Proto {
    type Error = String;
    fn try_from(r: ProtoRepr) -> Result<Self, String> {
        match r {
            ProtoRepr::Number(n) => u8::try_from(n)
                .map(Proto)
                .map_err(|_| format!("protocol number {n} is out of range 0-255")),
            ProtoRepr::Text(s) => s.parse(),
        }
    }
}

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(n) = s.parse::<u8>() {
            return Ok(Proto(n));
        }
        let lower = s.to_ascii_lowercase();
        PROTO_NAMES
            .iter()
            .find(|(name, _)| *name == lower)
            .map(|(_, n)| Proto(*n))
            .ok_or_else(|| {
                format!(
                    "unknown protocol {s:?} (tcp, udp, icmp, icmpv6, gre, esp, ah, sctp or 0-255)"
                )
            })
    }
}

impl From<Proto> for String {
    fn from(p: Proto) -> String {
        p.to_string()
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match PROTO_NAMES.iter().find(|(_, n)| *n == self.0) {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// An inclusive port range; a single port is `lo == hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "PortRepr", into = "String")]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PortRepr {
    Number(u64),
    Text(String),
}

impl TryFrom<PortRepr> for PortRange {
    type Error = String;
    fn try_from(r: PortRepr) -> Result<Self, String> {
        match r {
            PortRepr::Number(n) => u16::try_from(n)
                .map(|p| PortRange { lo: p, hi: p })
                .map_err(|_| format!("port {n} is out of range 0-65535")),
            PortRepr::Text(s) => s.parse(),
        }
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("port {p:?} is not a number in 0-65535"))
        };
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(s)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(format!("port range {s:?} is reversed ({lo} > {hi})"));
        }
        Ok(PortRange { lo, hi })
    }
}

impl From<PortRange> for String {
    fn from(p: PortRange) -> String {
        p.to_string()
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

/// An ICMP / ICMPv6 type, and optionally a code: `8`, `3/4`, or a name
/// (`echo-request`, `echo-reply`, `destination-unreachable`,
/// `time-exceeded`, `packet-too-big`). Names are resolved against the
/// rule's protocol when it is compiled, so the value stays as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IcmpMatch {
    pub text: String,
}

impl IcmpMatch {
    /// (type, code) for ICMP (v4) or ICMPv6.
    pub fn resolve(&self, v6: bool) -> Result<(u8, Option<u8>), String> {
        let (kind, code) = match self.text.split_once('/') {
            Some((k, c)) => (k, Some(c)),
            None => (self.text.as_str(), None),
        };
        let kind = match kind.parse::<u8>() {
            Ok(n) => n,
            Err(_) => icmp_name(kind, v6).ok_or_else(|| {
                format!(
                    "unknown {} type {kind:?} (a number, echo-request, echo-reply, \
                     destination-unreachable, time-exceeded{})",
                    if v6 { "ICMPv6" } else { "ICMP" },
                    if v6 { ", packet-too-big" } else { "" }
                )
            })?,
        };
        let code = match code {
            Some(c) => Some(
                c.parse::<u8>()
                    .map_err(|_| format!("ICMP code {c:?} is not a number in 0-255"))?,
            ),
            None => None,
        };
        Ok((kind, code))
    }
}

fn icmp_name(name: &str, v6: bool) -> Option<u8> {
    // RFC 792 and RFC 4443 type numbers.
    let n = match (name, v6) {
        ("echo-request", false) => 8,
        ("echo-reply", false) => 0,
        ("destination-unreachable", false) => 3,
        ("time-exceeded", false) => 11,
        ("echo-request", true) => 128,
        ("echo-reply", true) => 129,
        ("destination-unreachable", true) => 1,
        ("packet-too-big", true) => 2,
        ("time-exceeded", true) => 3,
        _ => return None,
    };
    Some(n)
}

impl TryFrom<String> for IcmpMatch {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let m = IcmpMatch { text };
        // Must make sense for at least one family; the rule's protocol
        // decides which at validation.
        m.resolve(false).or_else(|_| m.resolve(true))?;
        Ok(m)
    }
}

impl From<IcmpMatch> for String {
    fn from(m: IcmpMatch) -> String {
        m.text
    }
}

/// TCP flags that must be set (`syn`) or clear (`!ack`), comma-separated:
/// `"syn,!ack"` matches a connection's first segment. Flags not named are
/// ignored (iptables' `--tcp-flags MASK COMP` with MASK = the named flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TcpFlags {
    pub mask: u8,
    pub value: u8,
}

/// RFC 9293 3.1 control bits, low to high.
const TCP_FLAG_NAMES: [(&str, u8); 8] = [
    ("fin", 0x01),
    ("syn", 0x02),
    ("rst", 0x04),
    ("psh", 0x08),
    ("ack", 0x10),
    ("urg", 0x20),
    ("ece", 0x40),
    ("cwr", 0x80),
];

impl FromStr for TcpFlags {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut flags = TcpFlags { mask: 0, value: 0 };
        for part in s.split(',').map(str::trim) {
            let (negated, name) = match part.strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, part),
            };
            let bit = TCP_FLAG_NAMES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, b)| *b)
                .ok_or_else(|| {
                    format!("unknown TCP flag {name:?} in {s:?} (fin syn rst psh ack urg ece cwr, '!' to negate)")
                })?;
            if flags.mask & bit != 0 {
                return Err(format!("TCP flag {name:?} named twice in {s:?}"));
            }
            flags.mask |= bit;
            if !negated {
                flags.value |= bit;
            }
        }
        Ok(flags)
    }
}

impl TryFrom<String> for TcpFlags {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<TcpFlags> for String {
    fn from(f: TcpFlags) -> String {
        f.to_string()
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = TCP_FLAG_NAMES
            .iter()
            .filter(|(_, b)| self.mask & b != 0)
            .map(|(n, b)| {
                if self.value & b != 0 {
                    n.to_string()
                } else {
                    format!("!{n}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl TcpFlags {
    pub fn matches(&self, flags: u8) -> bool {
        flags & self.mask == self.value
    }
}

/// Connection states (nf_conntrack's ctstate).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
    Untracked,
}

impl CtState {
    pub const ALL: [CtState; 5] = [
        CtState::New,
        CtState::Established,
        CtState::Related,
        CtState::Invalid,
        CtState::Untracked,
    ];

    /// The program's `CT_STATE_*` value.
    pub fn code(self) -> u32 {
        match self {
            CtState::New => CT_STATE_NEW,
            CtState::Established => CT_STATE_ESTABLISHED,
            CtState::Related => CT_STATE_RELATED,
            CtState::Invalid => CT_STATE_INVALID,
            CtState::Untracked => CT_STATE_UNTRACKED,
        }
    }

    pub fn from_code(code: u32) -> Option<CtState> {
        CtState::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// One rule. `id` is the database's (0 before it is stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub id: u32,
    pub chain: Chain,
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Ingress interface name (the VLAN sub-interface for tagged frames).
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub in_iface: Option<String>,
    /// Egress interface name (forward chain only).
    #[serde(default, rename = "out", skip_serializing_if = "Option::is_none")]
    pub out_iface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<AddrMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<AddrMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<Proto>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<PortRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<PortRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<TcpFlags>,
    /// Connection states the rule matches; absent or empty = any.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub state: BTreeSet<CtState>,
    pub action: Verdict,
    /// Log the packets this rule drops or rejects (sampled and rate
    /// limited, see `firewall_log`); no effect on `accept`. Left out when
    /// false, so rulesets written before it existed read back unchanged.
    #[serde(default, skip_serializing_if = "is_false")]
    pub log: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

fn enabled_default() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A named list of prefixes, referenced by rules as `@name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressSet {
    /// 1-64 letters, digits, `-`, `_` or `.`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    /// Prefixes without host bits (`198.18.0.0/15`, `2001:db8::/32`).
    #[schema(value_type = Vec<String>)]
    pub prefixes: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

/// Default verdict of each chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policies {
    pub forward: Verdict,
    pub input: Verdict,
}

impl Default for Policies {
    fn default() -> Self {
        // An empty ruleset is a router, not a wall: nothing changes until
        // an operator writes rules.
        Policies {
            forward: Verdict::Accept,
            input: Verdict::Accept,
        }
    }
}

impl Policies {
    pub fn of(&self, chain: Chain) -> Verdict {
        match chain {
            Chain::Forward => self.forward,
            Chain::Input => self.input,
        }
    }
}

/// A whole ruleset: what one commit applies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ruleset {
    #[serde(default)]
    pub policy: Policies,
    /// Rules in order (the order within each chain is the match order).
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub sets: Vec<AddressSet>,
}

/// One reason a ruleset is refused. `rule` is the index in
/// [`Ruleset::rules`] (None for set or chain problems).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Problem {
    pub rule: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rule {
            Some(i) => write!(f, "rule {}: {}", i + 1, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl Rule {
    /// Checks that need only the rule itself (and the sets' names).
    pub fn problems(&self, set_names: &BTreeSet<&str>) -> Vec<String> {
        let mut out = Vec::new();
        let proto = self.proto.map(|p| p.0);
        if (self.sport.is_some() || self.dport.is_some())
            && !matches!(proto, Some(PROTO_TCP | PROTO_UDP))
        {
            out.push("sport/dport need proto = \"tcp\" or \"udp\"".to_string());
        }
        if self.tcp_flags.is_some() && proto != Some(PROTO_TCP) {
            out.push("tcp_flags needs proto = \"tcp\"".to_string());
        }
        if let Some(icmp) = &self.icmp {
            match proto {
                Some(PROTO_ICMP) => push_err(&mut out, icmp.resolve(false)),
                Some(PROTO_ICMPV6) => push_err(&mut out, icmp.resolve(true)),
                _ => out.push("icmp needs proto = \"icmp\" or \"icmpv6\"".to_string()),
            }
        }
        if self.chain == Chain::Input && self.out_iface.is_some() {
            out.push("the input chain has no egress interface (\"out\")".to_string());
        }
        for side in [&self.src, &self.dst].into_iter().flatten() {
            if let AddrMatch::Set(name) = side
                && !set_names.contains(name.as_str())
            {
                out.push(format!("address set @{name} does not exist"));
            }
        }
        if let (Some(AddrMatch::Prefix(s)), Some(AddrMatch::Prefix(d))) = (&self.src, &self.dst)
            && s.addr().is_ipv4() != d.addr().is_ipv4()
        {
            out.push(format!(
                "src {s} and dst {d} are of different address families"
            ));
        }
        for name in [&self.in_iface, &self.out_iface].into_iter().flatten() {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                out.push(format!("{name:?} is not a valid interface name"));
            }
        }
        out
    }
}

fn push_err<T>(out: &mut Vec<String>, r: Result<T, String>) {
    if let Err(e) = r {
        out.push(e);
    }
}

impl Ruleset {
    /// Every problem that does not depend on the running system (interface
    /// names are resolved when the ruleset is compiled).
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut names = BTreeSet::new();
        for set in &self.sets {
            if let Err(message) = validate_set_name(&set.name) {
                out.push(Problem {
                    rule: None,
                    message,
                });
            }
            if !names.insert(set.name.as_str()) {
                out.push(Problem {
                    rule: None,
                    message: format!("address set @{} is defined twice", set.name),
                });
            }
            for p in &set.prefixes {
                if p.trunc() != *p {
                    out.push(Problem {
                        rule: None,
                        message: format!(
                            "address set @{}: {p} has host bits set (did you mean {}?)",
                            set.name,
                            p.trunc()
                        ),
                    });
                }
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            out.extend(rule.problems(&names).into_iter().map(|message| Problem {
                rule: Some(i),
                message,
            }));
        }
        for chain in Chain::ALL {
            let n = self.enabled(chain).count();
            if n > FW_MAX_RULES as usize {
                out.push(Problem {
                    rule: None,
                    message: format!(
                        "the {chain} chain has {n} enabled rules; at most {FW_MAX_RULES} fit"
                    ),
                });
            }
        }
        out
    }

    /// Enabled rules of `chain`, in match order.
    pub fn enabled(&self, chain: Chain) -> impl Iterator<Item = &Rule> {
        self.rules
            .iter()
            .filter(move |r| r.chain == chain && r.enabled)
    }

    pub fn set(&self, name: &str) -> Option<&AddressSet> {
        self.sets.iter().find(|s| s.name == name)
    }
}

// ---- OpenAPI schemas ------------------------------------------------------
//
// The fields below are written as strings (and some also as numbers) by
// their own serde code; their schemas say which forms each takes. Replies
// always carry the string form.

/// A string schema matching `pattern`.
fn string_schema(pattern: &str, description: &str, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
        .examples([example])
}

impl PartialSchema for AddrMatch {
    fn schema() -> RefOr<Schema> {
        let address = |format| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(format)))
        };
        AnyOfBuilder::new()
            .description(Some(
                "A prefix without host bits, a bare address, or `@name` of an address set",
            ))
            .item(string_schema(
                "^(@[A-Za-z0-9._-]{1,64}|[0-9A-Fa-f.:]+(/[0-9]{1,3})?)$",
                "A prefix or `@name`",
                "198.18.0.0/15",
            ))
            .item(address(KnownFormat::Ipv4))
            .item(address(KnownFormat::Ipv6))
            .into()
    }
}
impl ToSchema for AddrMatch {}

impl PartialSchema for Proto {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .description(Some(
                "An IP protocol: a name, or a number (replies write numbers without a name as \
                 strings)",
            ))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(PROTO_NAMES.iter().map(|(name, _)| *name))),
            )
            .item(string_schema(
                "^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$",
                "A protocol number",
                "132",
            ))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(255)),
            )
            .into()
    }
}
impl ToSchema for Proto {}

impl PartialSchema for PortRange {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .description(Some(
                "A port (a number, or a string) or an inclusive range `lo-hi` (replies write \
                 strings)",
            ))
            .item(string_schema(
                "^[0-9]{1,5}(-[0-9]{1,5})?$",
                "A port or a range",
                "1024-65535",
            ))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(65535)),
            )
            .into()
    }
}
impl ToSchema for PortRange {}

impl PartialSchema for IcmpMatch {
    fn schema() -> RefOr<Schema> {
        string_schema(
            "^([0-9]{1,3}|[a-z-]+)(/[0-9]{1,3})?$",
            "An ICMP / ICMPv6 type, by number or name (`echo-request`, `echo-reply`, \
             `destination-unreachable`, `time-exceeded`, `packet-too-big`), and optionally \
             `/code`",
            "echo-request",
        )
        .into()
    }
}
impl ToSchema for IcmpMatch {}

impl PartialSchema for TcpFlags {
    fn schema() -> RefOr<Schema> {
        string_schema(
            "^!?(fin|syn|rst|psh|ack|urg|ece|cwr)(,!?(fin|syn|rst|psh|ack|urg|ece|cwr))*$",
            "TCP flags that must be set, or clear with `!`, comma-separated",
            "syn,!ack",
        )
        .into()
    }
}
impl ToSchema for TcpFlags {}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: serde_json::Value) -> Result<Rule, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn fields_parse_from_their_written_forms() {
        let r = rule(serde_json::json!({
            "chain": "forward", "in": "eth1", "src": "198.18.0.0/15", "dst": "@web",
            "proto": "tcp", "sport": "1024-65535", "dport": 443, "tcp_flags": "syn,!ack",
            "state": ["new"], "action": "accept", "comment": "https"
        }))
        .expect("valid rule");
        assert_eq!(r.dport, Some(PortRange { lo: 443, hi: 443 }));
        assert_eq!(
            r.sport,
            Some(PortRange {
                lo: 1024,
                hi: 65535
            })
        );
        assert_eq!(
            r.tcp_flags,
            Some(TcpFlags {
                mask: 0x12,
                value: 0x02
            })
        );
        assert_eq!(r.dst, Some(AddrMatch::Set("web".into())));
        assert_eq!(r.proto, Some(Proto(6)));
        let back = serde_json::to_value(&r).expect("serialise");
        assert_eq!(back["dport"], "443");
        assert_eq!(back["tcp_flags"], "syn,!ack");
        assert_eq!(rule(back).expect("round trip"), r);
    }

    #[test]
    fn log_defaults_to_false_and_round_trips() {
        let r = rule(serde_json::json!({"chain": "forward", "action": "drop"})).unwrap();
        assert!(!r.log);
        assert!(serde_json::to_value(&r).unwrap().get("log").is_none());
        let r =
            rule(serde_json::json!({"chain": "forward", "action": "drop", "log": true})).unwrap();
        assert!(r.log);
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["log"], true);
        assert_eq!(rule(back).unwrap(), r);
        assert!(
            rule(serde_json::json!({"chain": "forward", "action": "drop", "log": "yes"})).is_err()
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let err = |v: serde_json::Value| rule(v).expect_err("must fail").to_string();
        let base = |k: &str, v: serde_json::Value| {
            let mut m = serde_json::json!({"chain": "forward", "action": "drop"});
            m[k] = v;
            m
        };
        assert!(err(base("sport", "2000-1000".into())).contains("reversed"));
        assert!(err(base("dport", 70000.into())).contains("out of range"));
        assert!(err(base("src", "198.18.1.5/24".into())).contains("host bits"));
        assert!(err(base("src", "nonsense".into())).contains("not an IPv4/IPv6"));
        assert!(err(base("proto", "tcpp".into())).contains("unknown protocol"));
        assert!(err(base("tcp_flags", "syn,bogus".into())).contains("unknown TCP flag"));
        assert!(err(base("bogus_field", 1.into())).contains("unknown field"));
        assert!(err(base("chain", "output".into())).contains("unknown variant"));
    }

    #[test]
    fn ruleset_problems_name_the_rule() {
        let rs = Ruleset {
            rules: vec![
                rule(serde_json::json!({"chain": "forward", "action": "drop", "dport": 22}))
                    .unwrap(),
                rule(serde_json::json!({"chain": "input", "out": "eth2", "action": "drop"}))
                    .unwrap(),
                rule(serde_json::json!({"chain": "forward", "src": "@missing", "action": "drop"}))
                    .unwrap(),
                rule(serde_json::json!({"chain": "forward", "proto": "icmp", "icmp": "packet-too-big", "action": "drop"}))
                    .unwrap(),
            ],
            ..Default::default()
        };
        let problems: Vec<String> = rs.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("rule 1: sport/dport need"));
        assert!(problems[1].starts_with("rule 2: the input chain"));
        assert!(problems[2].contains("@missing does not exist"));
        assert!(problems[3].contains("unknown ICMP type"));
    }

    #[test]
    fn icmp_names_resolve_per_family() {
        let m = IcmpMatch::try_from("echo-request".to_string()).unwrap();
        assert_eq!(m.resolve(false), Ok((8, None)));
        assert_eq!(m.resolve(true), Ok((128, None)));
        let m = IcmpMatch::try_from("3/4".to_string()).unwrap();
        assert_eq!(m.resolve(false), Ok((3, Some(4))));
        assert!(IcmpMatch::try_from("3/x".to_string()).is_err());
    }
}
