//! Columnar in-memory subscriber table.
//!
//! One `Vec` per attribute, indexed by the dense subscriber id (`u32`, 0..len). String
//! attributes are dictionary-encoded (`u32` codes; code 0 is always the empty string, meaning
//! "missing"); numeric attributes are `f64` with `NaN` meaning missing. The condition
//! evaluator scans these columns directly. Ids are never reused or removed, so every
//! persisted bitmap stays valid.

use crate::fxhash::FxHashMap;

/// Names of the built-in string columns, in storage order.
pub const STRING_COLUMNS: [&str; 4] = ["brand", "region", "city", "plan"];
/// Names of the built-in numeric columns.
pub const NUMERIC_COLUMNS: [&str; 2] = ["arpu", "age"];

/// A dictionary for one string column: code ↔ value.
#[derive(Debug, Clone)]
pub struct Dict {
    values: Vec<Box<str>>,
    codes: FxHashMap<Box<str>, u32>,
}

impl Default for Dict {
    fn default() -> Self {
        let mut d = Self {
            values: Vec::new(),
            codes: FxHashMap::default(),
        };
        d.intern("");
        d
    }
}

impl Dict {
    /// Returns the code of `v`, adding it if new.
    pub fn intern(&mut self, v: &str) -> u32 {
        if let Some(&c) = self.codes.get(v) {
            return c;
        }
        let c = self.values.len() as u32;
        self.values.push(v.into());
        self.codes.insert(v.into(), c);
        c
    }
    /// Code of an existing value.
    pub fn code(&self, v: &str) -> Option<u32> {
        self.codes.get(v).copied()
    }
    /// Value of a code (empty string for unknown codes).
    pub fn value(&self, c: u32) -> &str {
        self.values.get(c as usize).map_or("", |v| v)
    }
    /// Number of distinct values including the empty one.
    pub fn len(&self) -> usize {
        self.values.len()
    }
    /// Always false: the empty value is always present.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
    /// All values in code order.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(|v| &**v)
    }
}

/// A dictionary-encoded string column.
#[derive(Debug, Clone, Default)]
pub struct StrColumn {
    pub dict: Dict,
    pub codes: Vec<u32>,
}

/// A borrowed view of one column, as the evaluator sees it.
#[derive(Debug, Clone, Copy)]
pub enum ColumnRef<'a> {
    /// The subscriber number itself.
    Msisdn(&'a [u64]),
    Str(&'a StrColumn),
    Num(&'a [f64]),
}

/// One subscriber's attributes as plain values (import, preview, synthesis).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SubscriberRow {
    pub msisdn: u64,
    pub brand: String,
    pub region: String,
    pub city: String,
    pub arpu: Option<f64>,
    pub age: Option<f64>,
    pub plan: String,
    /// Custom attributes (extra CSV columns), name → value.
    pub custom: Vec<(String, String)>,
}

/// The columnar table.
#[derive(Debug, Clone, Default)]
pub struct SubscriberTable {
    pub(crate) msisdn: Vec<u64>,
    pub(crate) index: FxHashMap<u64, u32>,
    /// brand, region, city, plan (see [`STRING_COLUMNS`]).
    pub(crate) strings: [StrColumn; 4],
    pub(crate) arpu: Vec<f64>,
    pub(crate) age: Vec<f64>,
    /// Custom string columns, in creation order (name, column).
    pub(crate) custom: Vec<(String, StrColumn)>,
}

impl SubscriberTable {
    /// Number of subscribers (ids are `0..len`).
    pub fn len(&self) -> u32 {
        self.msisdn.len() as u32
    }
    /// True when no subscriber was imported.
    pub fn is_empty(&self) -> bool {
        self.msisdn.is_empty()
    }
    /// Id of a normalised number.
    pub fn id_of(&self, msisdn: u64) -> Option<u32> {
        self.index.get(&msisdn).copied()
    }
    /// Number of subscriber `id`.
    pub fn msisdn(&self, id: u32) -> Option<u64> {
        self.msisdn.get(id as usize).copied()
    }

    /// Index of a custom column, creating it (backfilled with "missing") if new.
    pub fn custom_column(&mut self, name: &str) -> usize {
        if let Some(i) = self.custom.iter().position(|(n, _)| n == name) {
            return i;
        }
        let col = StrColumn {
            dict: Dict::default(),
            codes: vec![0; self.msisdn.len()],
        };
        self.custom.push((name.to_owned(), col));
        self.custom.len() - 1
    }

    /// Inserts or overwrites (last wins) one subscriber; returns its id.
    pub fn upsert(&mut self, row: &SubscriberRow) -> u32 {
        let id = self.upsert_id(row.msisdn);
        let i = id as usize;
        for (k, v) in [&row.brand, &row.region, &row.city, &row.plan]
            .into_iter()
            .enumerate()
        {
            let c = self.strings[k].dict.intern(v);
            self.strings[k].codes[i] = c;
        }
        self.arpu[i] = row.arpu.unwrap_or(f64::NAN);
        self.age[i] = row.age.unwrap_or(f64::NAN);
        // Last row wins entirely: attributes it does not carry become missing.
        for (_, c) in &mut self.custom {
            c.codes[i] = 0;
        }
        for (name, v) in &row.custom {
            let ci = self.custom_column(name);
            let col = &mut self.custom[ci].1;
            col.codes[i] = col.dict.intern(v);
        }
        id
    }

    /// Id for `msisdn`, appending an empty row if it is new.
    pub(crate) fn upsert_id(&mut self, msisdn: u64) -> u32 {
        if let Some(&id) = self.index.get(&msisdn) {
            return id;
        }
        let id = self.msisdn.len() as u32;
        self.msisdn.push(msisdn);
        self.index.insert(msisdn, id);
        for s in &mut self.strings {
            s.codes.push(0);
        }
        self.arpu.push(f64::NAN);
        self.age.push(f64::NAN);
        for (_, c) in &mut self.custom {
            c.codes.push(0);
        }
        id
    }

    /// Looks a column up by name (built-in or custom).
    pub fn column(&self, name: &str) -> Option<ColumnRef<'_>> {
        match name {
            "msisdn" => Some(ColumnRef::Msisdn(&self.msisdn)),
            "arpu" => Some(ColumnRef::Num(&self.arpu)),
            "age" => Some(ColumnRef::Num(&self.age)),
            _ => STRING_COLUMNS
                .iter()
                .position(|c| *c == name)
                .map(|i| ColumnRef::Str(&self.strings[i]))
                .or_else(|| {
                    self.custom
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, c)| ColumnRef::Str(c))
                }),
        }
    }

    /// All column names (for error messages and the API).
    pub fn column_names(&self) -> Vec<String> {
        let mut v = vec!["msisdn".to_owned()];
        v.extend(STRING_COLUMNS.iter().map(|s| (*s).to_owned()));
        v.extend(NUMERIC_COLUMNS.iter().map(|s| (*s).to_owned()));
        v.extend(self.custom.iter().map(|(n, _)| n.clone()));
        v
    }

    /// Value of a string attribute (built-in or custom) for one subscriber; "" if missing.
    pub fn str_value(&self, name: &str, id: u32) -> &str {
        match self.column(name) {
            Some(ColumnRef::Str(c)) => c
                .codes
                .get(id as usize)
                .map_or("", |&code| c.dict.value(code)),
            _ => "",
        }
    }

    /// Materialises one subscriber as a row.
    pub fn row(&self, id: u32) -> Option<SubscriberRow> {
        let i = id as usize;
        let msisdn = *self.msisdn.get(i)?;
        let s = |k: usize| {
            self.strings[k]
                .dict
                .value(self.strings[k].codes[i])
                .to_owned()
        };
        let num = |v: f64| (!v.is_nan()).then_some(v);
        Some(SubscriberRow {
            msisdn,
            brand: s(0),
            region: s(1),
            city: s(2),
            plan: s(3),
            arpu: num(self.arpu[i]),
            age: num(self.age[i]),
            custom: self
                .custom
                .iter()
                .filter(|(_, c)| c.codes[i] != 0)
                .map(|(n, c)| (n.clone(), c.dict.value(c.codes[i]).to_owned()))
                .collect(),
        })
    }

    /// Renders attribute `field` of subscriber `id` for template substitution.
    pub fn field_text(&self, field: &str, id: u32) -> Option<String> {
        let i = id as usize;
        match self.column(field)? {
            ColumnRef::Msisdn(m) => m.get(i).map(|v| v.to_string()),
            ColumnRef::Str(c) => c.codes.get(i).map(|&code| c.dict.value(code).to_owned()),
            ColumnRef::Num(v) => v.get(i).map(|x| {
                if x.is_nan() {
                    String::new()
                } else if x.fract() == 0.0 {
                    format!("{x:.0}")
                } else {
                    format!("{x}")
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_last_wins_and_custom_backfill() {
        let mut t = SubscriberTable::default();
        let mut r = SubscriberRow {
            msisdn: 13_800_000_001,
            brand: "gotone".into(),
            arpu: Some(10.0),
            ..Default::default()
        };
        assert_eq!(t.upsert(&r), 0);
        r.msisdn = 13_800_000_002;
        r.custom = vec![("vip".into(), "yes".into())];
        assert_eq!(t.upsert(&r), 1);
        r.msisdn = 13_800_000_001;
        r.brand = "mzone".into();
        r.custom.clear();
        assert_eq!(t.upsert(&r), 0);
        assert_eq!(t.len(), 2);
        assert_eq!(t.str_value("brand", 0), "mzone");
        assert_eq!(t.str_value("vip", 0), "");
        assert_eq!(t.str_value("vip", 1), "yes");
        assert_eq!(t.field_text("arpu", 1).as_deref(), Some("10"));
        assert_eq!(t.row(1).unwrap().custom, vec![("vip".into(), "yes".into())]);
    }
}
