//! The classifier: one data table mapping method + canonical path shape to the scopes a request
//! needs. Every CRM operation the proxy knows is a row of [`ROUTES`]; nothing is decided by
//! scattered `if`s.
//!
//! Matching rules, chosen so that no spelling variant of a path can get a broader decision than
//! its canonical form:
//! - fixed words (`settings`, `actions`, `search`, ...) match exactly (case-sensitive);
//! - module names match case-insensitively (`LEADS` = `Leads` = `leads`);
//! - the first row (in table order) whose shape and method match wins, so specific rows come
//!   before generic ones;
//! - a segment taken by a generic position (module, id, related list) that some other row, with
//!   the same prefix, has as a fixed word in that position is rejected with 400: always when it
//!   differs only in letter case (`/crm/v8/Leads/SEARCH`, `/crm/v8/SETTINGS/fields`,
//!   `/crm/v8/Leads/1/Photo`: 400); and the exact word, where a row serving the same method (or
//!   any row, for the first segment) has it, makes the request unknown (`GET /crm/v8/settings`,
//!   `GET /crm/v8/coql`, `GET /crm/v8/users/actions`: 403).
//!
//! Pure and allocation-free. Must not know about allowlists or bodies (it only says that a body
//! is needed).

use std::sync::OnceLock;

use super::canonical::{ambiguous, Area, Verb, MAX_SEGMENTS};

mod table;

use super::modules::ModuleMap;
use super::required::Required;
use super::scope::{Operation, Scope, Service};
use super::Rejection;
use table::{A, D, G, P, U};
pub(crate) use table::{ROUTES, SETTINGS_RESOURCES};

/// One position in a path shape.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Seg {
    /// A fixed word, matched exactly.
    Lit(&'static str),
    /// A module API name, resolved to its scope name into slot 0 (the module) or 1 (a related list).
    Module(u8),
    /// One particular module API name (case-insensitive), into a slot.
    Named(&'static str, u8),
    /// A record id, external id or other identifier: `[A-Za-z0-9][A-Za-z0-9_-]*`.
    Key,
    /// A settings resource name (see [`SETTINGS_RESOURCES`]).
    Settings,
    /// One or more further segments of `[A-Za-z0-9_-]`, all governed by the same scope.
    Rest,
}

/// Where a needed scope's sub-scope comes from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SubT {
    No,
    Fixed(&'static str),
    Slot(u8),
}

/// Where a needed scope's operation comes from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum OpT {
    /// GET/HEAD → READ, POST → CREATE, PUT/PATCH → UPDATE, DELETE → DELETE.
    Method,
    Is(Operation),
}

/// One scope a route needs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Need {
    Scope {
        service: Service,
        family: &'static str,
        sub: SubT,
        op: OpT,
    },
    /// The scope of the matched settings resource.
    Settings(OpT),
}

/// Requests whose scopes depend on their body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `POST /crm/{v}/coql`: modules after FROM.
    Coql,
    /// `POST /crm/bulk/{v}/read`: `query.module`.
    BulkRead,
    /// `POST /crm/bulk/{v}/write`: `resource[].module`.
    BulkWrite,
    /// `POST /crm/{v}/__composite_requests`: every sub-request.
    Composite,
}

/// One row of the classifier table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    pub area: Area,
    pub methods: u8,
    pub pat: &'static [Seg],
    pub needs: &'static [Need],
    pub body: Option<BodyKind>,
}

fn verb_bit(verb: Verb) -> u8 {
    match verb {
        Verb::Get | Verb::Head => G,
        Verb::Post => P,
        Verb::Put => U,
        Verb::Patch => A,
        Verb::Delete => D,
    }
}

pub(crate) fn method_op(verb: Verb) -> Operation {
    match verb {
        Verb::Get | Verb::Head => Operation::Read,
        Verb::Post => Operation::Create,
        Verb::Put | Verb::Patch => Operation::Update,
        Verb::Delete => Operation::Delete,
    }
}

/// What the table says about one request.
#[derive(Debug)]
pub(crate) enum Classified {
    /// The scopes it needs; `Some` body kind when the body adds more.
    Scopes(Required, Option<BodyKind>),
    /// A CRM path the table does not know (or a method the table has no row for).
    Unknown,
    /// Ambiguous spelling of a fixed word: 400.
    Ambiguous(Rejection),
}

/// A record id, external id or other identifier: `[A-Za-z0-9][A-Za-z0-9_-]*`, at most 200
/// bytes (also a table-driven product's path parameter).
pub(crate) fn is_key(text: &str) -> bool {
    let b = text.as_bytes();
    !b.is_empty()
        && b.len() <= 200
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
}

fn is_rest(text: &str) -> bool {
    let b = text.as_bytes();
    !b.is_empty()
        && b.len() <= 200
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
}

fn settings_index(text: &str) -> Option<usize> {
    SETTINGS_RESOURCES
        .iter()
        .position(|(word, ..)| *word == text)
}

fn settings_near(text: &str) -> Option<&'static str> {
    SETTINGS_RESOURCES
        .iter()
        .find(|(word, ..)| word.eq_ignore_ascii_case(text) && *word != text)
        .map(|(word, ..)| *word)
}

/// Whether some row of `area` has `text` (ignoring case) as the fixed word at `position`.
fn is_fixed_word(area: Area, position: usize, text: &str) -> bool {
    fixed_words(area, position)
        .iter()
        .any(|word| word.eq_ignore_ascii_case(text))
}

/// The fixed words of each area and position, computed once from [`ROUTES`] (one allocation
/// for the process lifetime, none per request).
fn fixed_words(area: Area, position: usize) -> &'static [&'static str] {
    static WORDS: OnceLock<Vec<Vec<Vec<&'static str>>>> = OnceLock::new();
    let table = WORDS.get_or_init(|| {
        [Area::Crm, Area::Bulk, Area::Email]
            .iter()
            .map(|a| {
                (0..MAX_SEGMENTS)
                    .map(|pos| {
                        let mut words: Vec<&'static str> = Vec::new();
                        for route in ROUTES.iter().filter(|r| r.area == *a) {
                            if let Some(Seg::Lit(word)) = route.pat.get(pos) {
                                if !words.contains(word) {
                                    words.push(word);
                                }
                            }
                        }
                        words
                    })
                    .collect()
            })
            .collect()
    });
    let a = match area {
        Area::Crm => 0,
        Area::Bulk => 1,
        Area::Email => 2,
    };
    table
        .get(a)
        .and_then(|positions| positions.get(position))
        .map_or(&[], Vec::as_slice)
}

#[derive(Clone, Copy, Default)]
struct Caps {
    modules: [Option<&'static str>; 2],
    settings: Option<usize>,
}

/// The rows of each area indexed by their first position, computed once from [`ROUTES`]: rows
/// whose first position is not a fixed word (they may take any first segment), and for each fixed
/// first word (keyed without case) the rows that start with it. Row numbers are in table order.
struct FirstIndex {
    open: ByLen,
    by_word: Vec<(String, ByLen)>,
}

/// Rows split by the segment counts they matter for ([`Row::matters`]), so a lookup walks only
/// those: bucket `len` for paths of `len` segments, the last bucket for every longer path (no
/// row has more fixed positions than [`MAX_SEGMENTS`], so all such counts agree).
struct ByLen {
    buckets: Vec<Vec<Row>>,
}

impl ByLen {
    fn new(rows: &[Row]) -> ByLen {
        ByLen {
            buckets: (0..=MAX_SEGMENTS + 1)
                .map(|len| rows.iter().copied().filter(|r| r.matters(len)).collect())
                .collect(),
        }
    }

    fn rows(&self, len: usize) -> &[Row] {
        let last = self.buckets.len().saturating_sub(1);
        self.buckets.get(len.min(last)).map_or(&[], Vec::as_slice)
    }
}

/// A row number with what decides, from the segment count alone, whether the row can matter.
#[derive(Clone, Copy)]
struct Row {
    n: u16,
    /// Positions before `Rest` (the whole pattern without one).
    fixed: u8,
    /// Whether the pattern ends in `Rest` (one or more further segments).
    rest: bool,
    /// The first position holding a fixed word or a settings resource: the only kinds of
    /// position that mark a path (as a fixed word, or a near miss) without the row matching.
    first_mark: u8,
}

impl Row {
    fn new(n: u16, route: &Route) -> Row {
        let position = |found: Option<usize>| found.map_or(u8::MAX, |p| p as u8);
        Row {
            n,
            fixed: position(route.pat.iter().position(|s| matches!(s, Seg::Rest)))
                .min(route.pat.len() as u8),
            rest: route.pat.iter().any(|s| matches!(s, Seg::Rest)),
            first_mark: position(
                route
                    .pat
                    .iter()
                    .position(|s| matches!(s, Seg::Lit(_) | Seg::Settings)),
            ),
        }
    }

    /// Whether the row can match or mark anything for a path of `len` segments: it cannot when
    /// the count rules a match out and it stops (at the first missing segment, or past its
    /// last position) before its first marking position.
    fn matters(&self, len: usize) -> bool {
        let fixed = usize::from(self.fixed);
        let can_match = if self.rest { len > fixed } else { len == fixed };
        can_match || usize::from(self.first_mark) < len.min(fixed)
    }
}

fn first_index(area: Area) -> &'static FirstIndex {
    static INDEX: OnceLock<[FirstIndex; 3]> = OnceLock::new();
    let all = INDEX.get_or_init(|| {
        [Area::Crm, Area::Bulk, Area::Email].map(|a| {
            let mut open = Vec::new();
            let mut by_word: Vec<(String, Vec<Row>)> = Vec::new();
            for (n, route) in ROUTES.iter().enumerate().filter(|(_, r)| r.area == a) {
                let n = u16::try_from(n).expect("the route table has fewer than 65536 rows");
                let n = Row::new(n, route);
                match route.pat.first() {
                    Some(Seg::Lit(word)) => {
                        let key = word.to_ascii_lowercase();
                        match by_word.iter_mut().find(|(k, _)| *k == key) {
                            Some((_, rows)) => rows.push(n),
                            None => by_word.push((key, vec![n])),
                        }
                    }
                    _ => open.push(n),
                }
            }
            FirstIndex {
                open: ByLen::new(&open),
                by_word: by_word
                    .into_iter()
                    .map(|(word, rows)| (word, ByLen::new(&rows)))
                    .collect(),
            }
        })
    });
    match area {
        Area::Crm => &all[0],
        Area::Bulk => &all[1],
        Area::Email => &all[2],
    }
}

/// The rows of `area` that can match or mark anything for the path `segs`, in table order: a row
/// whose fixed first word differs from the first segment even ignoring case stops at its first
/// position without effect, and so does one that [`Row::matters`] rules out; both are skipped
/// (the second kind through [`ByLen`]'s buckets). Allocation-free.
fn candidate_rows(area: Area, segs: &[&str]) -> impl Iterator<Item = &'static Route> {
    let index = first_index(area);
    let len = segs.len();
    let words: &[Row] = segs
        .first()
        .and_then(|f| {
            index
                .by_word
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(f))
        })
        .map_or(&[], |(_, rows)| rows.rows(len));
    let (mut a, mut b) = (index.open.rows(len), words);
    let merged = std::iter::from_fn(move || {
        let next = match (a.first(), b.first()) {
            (Some(&x), Some(&y)) if x.n < y.n => {
                a = &a[1..];
                x
            }
            (_, Some(&y)) => {
                b = &b[1..];
                y
            }
            (Some(&x), None) => {
                a = &a[1..];
                x
            }
            (None, None) => return None,
        };
        Some(next)
    });
    merged.filter_map(|row| ROUTES.get(usize::from(row.n)))
}

/// Classifies the segments after the version. Allocation-free.
pub(crate) fn classify(map: &ModuleMap, area: Area, segs: &[&str], verb: Verb) -> Classified {
    classify_rows(map, segs, verb, area, candidate_rows(area, segs))
}

/// [`classify`] over the given rows of `area` (all of them, or the candidates).
fn classify_rows<'r>(
    map: &ModuleMap,
    segs: &[&str],
    verb: Verb,
    area: Area,
    rows: impl Iterator<Item = &'r Route>,
) -> Classified {
    let bit = verb_bit(verb);
    // Positions where some row (with a matching prefix) has a fixed word equal to the segment,
    // ignoring case; and the first such word per position, for the message.
    let mut literal_seen: u32 = 0;
    let mut variant_seen: u32 = 0;
    let mut literal_word: [&str; MAX_SEGMENTS] = [""; MAX_SEGMENTS];
    let mut near_miss: Option<usize> = None;
    // The module a segment names, worked out once per position: many rows have a module there.
    let mut modules: [Option<Option<&'static str>>; MAX_SEGMENTS] = [None; MAX_SEGMENTS];
    // (row, captures, generic positions, positions taken by `Rest`)
    let mut found: Option<(&Route, Caps, u32, u32)> = None;

    for route in rows {
        let mut caps = Caps::default();
        let mut generic: u32 = 0;
        let mut rest: u32 = 0;
        let mut matched = true;
        let mut consumed = 0;
        for (i, seg) in route.pat.iter().enumerate() {
            if let Seg::Rest = seg {
                if i >= segs.len() || !segs[i..].iter().all(|s| is_rest(s)) {
                    matched = false;
                    break;
                }
                for j in i..segs.len() {
                    rest |= 1 << j;
                }
                consumed = segs.len();
                break;
            }
            let Some(text) = segs.get(i).copied() else {
                matched = false;
                break;
            };
            let ok = match *seg {
                Seg::Lit(word) => {
                    // A case variant always counts (it must never reach a generic row); the
                    // exact word counts where this row serves the request's method.
                    // Area words in the first position (`settings`, `coql`, `users`, ...) are
                    // never module names, whatever the method.
                    let variant = text != word && text.eq_ignore_ascii_case(word);
                    if variant || (text == word && (route.methods & bit != 0 || i == 0)) {
                        if literal_seen & (1 << i) == 0 {
                            literal_word[i] = word;
                        }
                        literal_seen |= 1 << i;
                    }
                    if variant {
                        variant_seen |= 1 << i;
                    }
                    if text == word {
                        true
                    } else {
                        if text.eq_ignore_ascii_case(word) && near_miss.is_none() {
                            near_miss = Some(i);
                        }
                        false
                    }
                }
                Seg::Module(slot) => match module_at(&mut modules, i, || {
                    // A fixed word of this position (in any case) is never a module name.
                    if is_fixed_word(area, i, text) {
                        None
                    } else {
                        map.resolve(text)
                    }
                }) {
                    Some(scope) => {
                        caps.modules[usize::from(slot)] = Some(scope);
                        generic |= 1 << i;
                        true
                    }
                    None => false,
                },
                Seg::Named(name, slot) => {
                    if text.eq_ignore_ascii_case(name) {
                        caps.modules[usize::from(slot)] = map.resolve(text);
                        true
                    } else {
                        false
                    }
                }
                Seg::Key => {
                    generic |= 1 << i;
                    is_key(text)
                }
                Seg::Settings => match settings_index(text) {
                    Some(n) => {
                        caps.settings = Some(n);
                        true
                    }
                    None => {
                        if let Some(word) = settings_near(text) {
                            if literal_seen & (1 << i) == 0 {
                                literal_word[i] = word;
                            }
                            literal_seen |= 1 << i;
                            variant_seen |= 1 << i;
                            near_miss.get_or_insert(i);
                        }
                        false
                    }
                },
                Seg::Rest => false,
            };
            if !ok {
                matched = false;
                break;
            }
            consumed = i + 1;
        }
        if matched && consumed == segs.len() && route.methods & bit != 0 && found.is_none() {
            found = Some((route, caps, generic, rest));
        }
    }

    if let Some((route, caps, generic, rest)) = found {
        // Under one settings resource every sub-path has the same scope, so only case variants
        // of fixed words matter there.
        if generic & literal_seen == 0 && rest & variant_seen == 0 {
            return match build(route, &caps, verb) {
                Some(required) => Classified::Scopes(required, route.body),
                None => Classified::Unknown,
            };
        }
    }
    // No row, or the matching row captured a fixed word generically: a case variant of a fixed
    // word is ambiguous (400); the exact word with a method or shape no row serves is unknown.
    match near_miss {
        Some(i) => Classified::Ambiguous(ambiguous(segs[i], literal_word[i])),
        None => Classified::Unknown,
    }
}

/// The memoised module resolution of position `i` (computed by `resolve` on first use).
fn module_at(
    memo: &mut [Option<Option<&'static str>>; MAX_SEGMENTS],
    i: usize,
    resolve: impl FnOnce() -> Option<&'static str>,
) -> Option<&'static str> {
    match memo.get_mut(i) {
        Some(slot) => *slot.get_or_insert_with(resolve),
        None => resolve(),
    }
}

fn build(route: &Route, caps: &Caps, verb: Verb) -> Option<Required> {
    let mut required = Required::new();
    for need in route.needs {
        let scope = match *need {
            Need::Scope {
                service,
                family,
                sub,
                op,
            } => {
                let sub = match sub {
                    SubT::No => None,
                    SubT::Fixed(s) => Some(s),
                    // A slot the pattern did not fill is a table bug: fail closed.
                    SubT::Slot(n) => Some(caps.modules[usize::from(n)]?),
                };
                Scope::from_parts(service, family, sub, resolve_op(op, verb))
            }
            Need::Settings(op) => {
                let (_, service, family, sub) = SETTINGS_RESOURCES.get(caps.settings?)?;
                Scope::from_parts(*service, family, *sub, resolve_op(op, verb))
            }
        };
        required.push(scope);
    }
    Some(required)
}

fn resolve_op(op: OpT, verb: Verb) -> Operation {
    match op {
        OpT::Method => method_op(verb),
        OpT::Is(op) => op,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::scope::{find_family, Subs, SETTINGS_SUBS};

    #[test]
    fn every_table_scope_is_in_the_grammar() {
        let mut scopes: Vec<(Service, &str, Option<&str>)> = Vec::new();
        for route in ROUTES {
            for need in route.needs {
                if let Need::Scope {
                    service,
                    family,
                    sub,
                    ..
                } = need
                {
                    let sub = match sub {
                        SubT::Fixed(s) => Some(*s),
                        _ => None,
                    };
                    scopes.push((*service, family, sub));
                }
            }
        }
        for (_, service, family, sub) in SETTINGS_RESOURCES {
            scopes.push((*service, family, *sub));
        }
        for (service, family, sub) in scopes {
            let fam = find_family(service, family)
                .unwrap_or_else(|| panic!("family {family} of a route is not in the grammar"));
            assert_eq!(
                fam.name, family,
                "route family {family} uses the canonical spelling"
            );
            if let Some(sub) = sub {
                let known = match fam.subs {
                    Subs::Settings => SETTINGS_SUBS.contains(&sub),
                    Subs::Module => crate::policy::modules::MODULE_SCOPES.contains(&sub),
                    Subs::Fixed(list) => list.contains(&sub),
                    Subs::None => false,
                };
                assert!(
                    known,
                    "sub-scope {family}.{sub} of a route is not in the grammar"
                );
            }
        }
    }

    /// The indexed rows decide exactly as a scan of the whole table, for every path of the
    /// operations list and a spread of variants of them.
    #[test]
    fn candidate_rows_decide_as_the_full_table() {
        let map = ModuleMap::default();
        let ops = include_str!("../../../tests/data/crm-v8-operations.tsv");
        let mut paths: Vec<String> = Vec::new();
        for line in ops
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
        {
            let Some(path) = line.split('\t').nth(1) else {
                continue;
            };
            let path = path
                .replace("{module_api_name}", "Leads")
                .replace(['{', '}'], "");
            paths.push(path.clone());
            paths.push(path.to_ascii_uppercase());
            paths.push(path.to_ascii_lowercase());
            paths.push(format!("{path}/extra"));
            if let Some((head, _)) = path.rsplit_once('/') {
                paths.push(head.to_string());
            }
        }
        paths.extend(
            [
                "/crm/v8/",
                "/crm/v8/Custom_Mod/1/Notes",
                "/crm/bulk/v8/read",
            ]
            .map(String::from),
        );
        let mut checked = 0;
        for path in paths.iter().filter(|p| p.starts_with('/')) {
            let Ok(super::super::canonical::Located::Crm(area, segs)) =
                super::super::canonical::locate(path)
            else {
                continue;
            };
            for verb in [
                Verb::Get,
                Verb::Head,
                Verb::Post,
                Verb::Put,
                Verb::Patch,
                Verb::Delete,
            ] {
                let fast = classify(&map, area, segs.as_slice(), verb);
                let full = classify_rows(
                    &map,
                    segs.as_slice(),
                    verb,
                    area,
                    ROUTES.iter().filter(|r| r.area == area),
                );
                assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{verb:?} {path}");
                checked += 1;
            }
        }
        assert!(checked > 5000, "only {checked} cases were checked");
    }

    #[test]
    fn length_buckets_hold_exactly_the_rows_that_matter() {
        for area in [Area::Crm, Area::Bulk, Area::Email] {
            let index = first_index(area);
            // Each list's rows straight from the table: the open ones (no fixed first word)
            // and, per first word, those that start with it.
            let first_word = |route: &Route| match route.pat.first() {
                Some(Seg::Lit(word)) => Some(word.to_ascii_lowercase()),
                _ => None,
            };
            let lists = std::iter::once((None, &index.open))
                .chain(index.by_word.iter().map(|(w, b)| (Some(w.clone()), b)));
            for (word, by_len) in lists {
                for len in 0..MAX_SEGMENTS + 4 {
                    let want: Vec<u16> = ROUTES
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.area == area && first_word(r) == word)
                        .map(|(n, r)| Row::new(n as u16, r))
                        .filter(|row| row.matters(len))
                        .map(|row| row.n)
                        .collect();
                    let got: Vec<u16> = by_len.rows(len).iter().map(|r| r.n).collect();
                    assert_eq!(got, want, "{area:?} {word:?}, {len} segments");
                }
            }
        }
    }

    #[test]
    fn patterns_fit_the_segment_limit() {
        for route in ROUTES {
            assert!(
                route.pat.len() <= MAX_SEGMENTS,
                "route {:?} is longer than MAX_SEGMENTS",
                route.pat
            );
        }
    }
}
