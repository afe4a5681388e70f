use traced_ffi::Fields;

#[derive(Clone, Copy, Fields)]
#[repr(C)]
struct Inner {
    tag: u8,
    value: u32,
}

#[derive(Clone, Copy, Fields)]
#[repr(C)]
struct Outer {
    id: u64,
    inner: Inner,
    pair: [Inner; 2],
    raw: *const u8,
}

#[derive(Clone, Copy, Fields)]
#[repr(C, packed)]
struct Packed {
    tag: u8,
    r#type: u32,
}

#[derive(Clone, Copy, Fields)]
#[repr(C)]
#[fields(crate = ::traced_ffi)]
struct Renamed {
    level: i32,
}

fn main() {
    let names: Vec<String> = Outer::fields().into_iter().map(|f| f.name).collect();
    assert_eq!(
        names,
        ["id", "inner.tag", "inner.value", "pair[0].tag", "pair[0].value", "pair[1].tag", "pair[1].value", "raw"]
    );
    let packed: Vec<(String, usize)> = Packed::fields().into_iter().map(|f| (f.name, f.offset)).collect();
    assert_eq!(packed, [("tag".to_owned(), 0), ("type".to_owned(), 1)]);
    assert_eq!(Renamed::fields().len(), 1);
}
