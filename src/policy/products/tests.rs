use super::*;

#[test]
fn every_embedded_table_reads_whole() {
    for product in PRODUCTS.iter() {
        let Operations::Table(text) = product.operations else {
            continue;
        };
        let table = table::parse(product, text).unwrap_or_else(|e| panic!("{e}"));
        let lines = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("method\t") && !l.is_empty())
            .count();
        assert_eq!(table.operations(), lines, "{}", product.name);
        assert!(product.table().is_some(), "{}", product.name);
    }
    assert_eq!(by_name("books").map(|p| p.service), Some(Service::Books));
    assert_eq!(table_families(Service::Books).len(), 18 + 1);
    assert_eq!(table_families(Service::Inventory).len(), 18 + 1);
    assert!(table_families(Service::Crm).is_empty());
}

#[test]
fn invalid_tokens_are_read_in_each_products_envelope() {
    let books = by_name("books").expect("books");
    assert!(books.is_invalid_token(br#"{"code":57,"message":"Invalid Access Token"}"#));
    assert!(!books.is_invalid_token(br#"{"code":"57"}"#));
    assert!(!books.is_invalid_token(br#"{"code":14,"message":"x"}"#));
    assert!(crm().is_invalid_token(br#"{"code":"INVALID_TOKEN","status":"error"}"#));
    assert!(!crm().is_invalid_token(br#"{"code":57}"#));
    assert!(!crm().is_invalid_token(b"not json"));
}

#[test]
fn a_broken_table_names_its_line() {
    let books = by_name("books").expect("books");
    for (text, expected) in [
        ("GET\t/books/v3/x\t-\n", "fewer than five"),
        ("FETCH\t/books/v3/x\t-\tZohoBooks.x.READ\trequired\n", "unknown method"),
        ("GET\t/crm/v3/x\t-\tZohoBooks.x.READ\trequired\n", "outside"),
        ("GET\t/books/v3/x\t-\tZohoCRM.x.READ\trequired\n", "scope"),
        ("GET\t/books/v3/x\t-\tZohoBooks.x.READ\tmaybe\n", "organization_id"),
        ("GET\t/books/v3/x\t-\tZohoBooks.x.READ\trequired\nGET\t/books/v3/x\t-\tZohoBooks.y.READ\trequired\n", "twice"),
        ("GET\t/books/v3/x%\t-\tZohoBooks.x.READ\trequired\n", "neither"),
    ] {
        let err = table::parse(books, text).expect_err(text);
        assert!(err.contains(expected), "{err}");
    }
}
