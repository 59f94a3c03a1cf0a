//! The body rules' tables: COQL, strict JSON, method conventions.

use super::coql::coql_modules;
use super::json::get_exact;
use super::*;
use crate::policy::canonical::Verb;
use crate::policy::routes::method_op as op_of;

/// (query, Ok((modules, lookup)) | Err(substring))
#[allow(clippy::type_complexity)]
const COQL_CASES: &[(&str, Result<(&[&str], bool), &str>)] = &[
    (
        "select Last_Name from Leads where id is not null",
        Ok((&["Leads"], false)),
    ),
    ("SELECT Email FROM Contacts", Ok((&["Contacts"], false))),
    (
        "select a from Leads where b = 'x from Contacts'",
        Ok((&["Leads"], false)),
    ),
    (
        "select a from Leads where b = 'it''s from Contacts'",
        Ok((&["Leads"], false)),
    ),
    (
        "select Account_Name.Account_Name from Contacts",
        Ok((&["Contacts"], true)),
    ),
    (
        "select Owner.name, Created_By.email from Leads",
        Ok((&["Leads"], false)),
    ),
    (
        "select l.Last_Name from Leads as l",
        Ok((&["Leads"], false)),
    ),
    (
        "select a from Leads join Contacts on x = y",
        Ok((&["Leads", "Contacts"], false)),
    ),
    (
        "select a from Leads where id in (select b from Deals)",
        Ok((&["Leads", "Deals"], false)),
    ),
    (
        "select a from Leads where b = 'x\\' from Contacts'",
        Err("backslash"),
    ),
    ("select a from Leads where b = 'open", Err("unterminated")),
    ("select a from Leads -- from Contacts", Err("comment")),
    ("select a from Leads; select b from Contacts", Err("`;`")),
    ("select a where b = 1", Err("no FROM")),
    ("delete from Leads", Err("start with SELECT")),
    ("select a from \"Contacts\"", Err("double quotes")),
    ("select a from where", Err("FROM must be followed")),
];

#[test]
fn coql_table() {
    for (query, expected) in COQL_CASES {
        match (expected, coql_modules(query)) {
            (Ok((mods, lookup)), Ok((got, got_lookup))) => {
                assert_eq!(&got[..], *mods, "case {query:?}: modules");
                assert_eq!(got_lookup, *lookup, "case {query:?}: lookup traversal");
            }
            (Err(needle), Err(r)) => assert!(
                r.message.contains(needle),
                "case {query:?}: message {:?} should contain {needle:?}",
                r.message
            ),
            (exp, got) => panic!("case {query:?}: expected {exp:?}, got {got:?}"),
        }
    }
}

#[test]
fn duplicate_and_case_variant_keys_are_refused() {
    let dup = br#"{"select_query":"select a from Leads","select_query":"select a from Contacts"}"#;
    let err = parse_object(dup).expect_err("duplicate keys are refused");
    assert!(
        err.message.contains("duplicate key"),
        "message names the duplicate: {}",
        err.message
    );
    let escaped =
        br#"{"select_query":"select a from Leads","select\u005fquery":"select a from Contacts"}"#;
    assert!(
        parse_object(escaped).is_err(),
        "a key spelled with an escape is still a duplicate"
    );
    let variant =
        br#"{"select_query":"select a from Leads","SELECT_QUERY":"select a from Contacts"}"#;
    let object = parse_object(variant).expect("distinct keys parse");
    let err = get_exact(&object, "select_query").expect_err("case-variant key is refused");
    assert!(
        err.message.contains("letter case"),
        "message explains the case clash: {}",
        err.message
    );
}

#[test]
fn method_ops_match_the_table_convention() {
    assert_eq!(
        op_of(Verb::Head),
        Operation::Read,
        "HEAD needs what GET needs"
    );
    assert_eq!(op_of(Verb::Patch), Operation::Update, "PATCH updates");
}
