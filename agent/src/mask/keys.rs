//! Key and column rules: a JSON key, CSV or markdown column header, or
//! `label:` whose name says it holds an identifier (`ssn`, `date_of_birth`,
//! `Patient Name`) has its whole value masked, whatever the value looks
//! like. Names compare case- and separator-insensitively.

use super::entity::Entity;
use super::fasthash::FastMap;

#[derive(Debug, Clone, Default)]
pub struct KeyRules {
    /// Normalised key → kind.
    exact: FastMap<String, Entity>,
    /// Normalised endings (`phone` covers `home_phone`), tried after `exact`
    /// in the order they were added.
    suffixes: Vec<(String, Entity)>,
    /// The endings by their last byte (indices into `suffixes`, in order):
    /// a key is compared only with the endings it could have. An ending
    /// with no letter or digit ends every key: it is in every list.
    by_last: FastMap<u8, Vec<usize>>,
}

/// Longest key worth normalising on the stack; longer keys are compared
/// through an allocation.
const STACK_KEY: usize = 64;

impl KeyRules {
    /// No rules.
    pub fn empty() -> KeyRules {
        KeyRules::default()
    }

    /// The rules of the built-in `safe-harbor` profile.
    pub fn safe_harbor() -> KeyRules {
        use Entity::*;
        let mut rules = KeyRules::empty();
        let exact: &[(&[&str], Entity)] = &[
            (
                &[
                    "ssn",
                    "social_security_number",
                    "social_security",
                    "socsec",
                    "ssn_number",
                ],
                Ssn,
            ),
            (
                &[
                    "dob",
                    "date_of_birth",
                    "birth_date",
                    "birthdate",
                    "birthday",
                    "date_of_death",
                    "dod",
                    "death_date",
                    "admission_date",
                    "admit_date",
                    "discharge_date",
                    "service_date",
                    "date_of_service",
                    "dos",
                    "visit_date",
                    "encounter_date",
                    "appointment_date",
                    "surgery_date",
                    "procedure_date",
                ],
                Date,
            ),
            (
                &[
                    "name",
                    "patient_name",
                    "full_name",
                    "first_name",
                    "last_name",
                    "middle_name",
                    "given_name",
                    "family_name",
                    "surname",
                    "maiden_name",
                    "fname",
                    "lname",
                    "guarantor_name",
                    "contact_name",
                    "emergency_contact",
                    "emergency_contact_name",
                    "next_of_kin",
                    "mothers_maiden_name",
                    "spouse_name",
                    "mother_name",
                    "father_name",
                    "subscriber_name",
                    "insured_name",
                    "member_name",
                    "legal_name",
                    "preferred_name",
                    "nickname",
                    // 164.514(b)(2)(i): names of relatives, employers and
                    // household members too
                    "employer",
                    "employer_name",
                ],
                Name,
            ),
            (
                &[
                    "mrn",
                    "medical_record_number",
                    "medical_record",
                    "patient_id",
                    "chart_number",
                    "mr_number",
                ],
                Mrn,
            ),
            (
                &[
                    "address",
                    "street",
                    "street_address",
                    "address1",
                    "address2",
                    "address_line1",
                    "address_line2",
                    "home_address",
                    "mailing_address",
                    "city",
                    "county",
                    "town",
                    "residence",
                ],
                Address,
            ),
            (
                &[
                    "zip",
                    "zipcode",
                    "zip_code",
                    "postal_code",
                    "postcode",
                    "zip4",
                ],
                Zip,
            ),
            (
                &[
                    "phone",
                    "phone_number",
                    "telephone",
                    "tel",
                    "mobile",
                    "cell",
                    "cell_phone",
                    "home_phone",
                    "work_phone",
                    "fax",
                    "fax_number",
                    "pager",
                    "contact_number",
                ],
                Phone,
            ),
            (&["email", "email_address", "e_mail"], Email),
            (
                &[
                    "member_id",
                    "subscriber_id",
                    "policy_number",
                    "insurance_id",
                    "mbi",
                    "medicare_id",
                    "medicaid_id",
                    "beneficiary_id",
                    "health_plan_id",
                    "hicn",
                ],
                Mbi,
            ),
            (
                &[
                    "account_number",
                    "account",
                    "acct",
                    "acct_number",
                    "bank_account",
                    "account_no",
                ],
                Account,
            ),
            (
                &["card_number", "credit_card", "cc_number", "pan", "card"],
                Card,
            ),
            (&["iban"], Iban),
            (&["npi"], Npi),
            (&["dea", "dea_number"], Dea),
            (
                &[
                    "license_number",
                    "drivers_license",
                    "driver_license",
                    "dl_number",
                    "licence_number",
                    "certificate_number",
                ],
                License,
            ),
            (&["vin", "vehicle_vin", "vehicle_id"], Vin),
            (&["license_plate", "plate", "plate_number"], Plate),
            (
                &[
                    "device_id",
                    "serial_number",
                    "serial",
                    "udi",
                    "imei",
                    "device_serial",
                ],
                Device,
            ),
            (&["mac", "mac_address"], Mac),
            (
                &["ip", "ip_address", "client_ip", "remote_addr", "remote_ip"],
                Ip,
            ),
            (&["url", "website", "homepage"], Url),
            (&["age"], Age),
        ];
        for (keys, entity) in exact {
            for k in *keys {
                rules.insert(k, entity.clone());
            }
        }
        let suffixes: &[(&str, Entity)] = &[
            ("ssn", Ssn),
            ("phone", Phone),
            ("phone_number", Phone),
            ("fax", Phone),
            ("email", Email),
            ("email_address", Email),
            ("address", Address),
            ("zip", Zip),
            ("zip_code", Zip),
            ("dob", Date),
            ("date_of_birth", Date),
            ("birth_date", Date),
            ("first_name", Name),
            ("last_name", Name),
            ("full_name", Name),
            ("mrn", Mrn),
            ("member_id", Mbi),
            ("account_number", Account),
            ("card_number", Card),
        ];
        for (s, entity) in suffixes {
            rules.insert_suffix(s, entity.clone());
        }
        rules
    }

    pub fn insert(&mut self, key: &str, entity: Entity) {
        self.exact.insert(normalise(key), entity);
    }

    pub fn insert_suffix(&mut self, suffix: &str, entity: Entity) {
        let s = normalise(suffix);
        self.suffixes.retain(|(x, _)| *x != s);
        self.suffixes.push((s, entity));
        self.index_suffixes();
    }

    /// Drops a key from both the exact rules and the endings.
    pub fn remove(&mut self, key: &str) {
        let k = normalise(key);
        self.exact.remove(&k);
        self.suffixes.retain(|(x, _)| *x != k);
        self.index_suffixes();
    }

    fn index_suffixes(&mut self) {
        self.by_last.clear();
        let every: Vec<u8> = (b'0'..=b'9').chain(b'a'..=b'z').collect();
        for (i, (s, _)) in self.suffixes.iter().enumerate() {
            let lasts = match s.as_bytes().last() {
                Some(&last) => vec![last],
                None => every.clone(),
            };
            for last in lasts {
                self.by_last.entry(last).or_default().push(i);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty()
    }

    /// The kind a key names, if any: exact first (also without a plural
    /// `s`/`es`), then the endings.
    pub fn lookup(&self, key: &str) -> Option<&Entity> {
        if key.is_empty() || self.is_empty() {
            return None;
        }
        let mut buf = [0u8; STACK_KEY];
        let owned;
        let norm: &str = if key.len() <= STACK_KEY {
            let mut n = 0;
            for c in key.bytes().filter(u8::is_ascii_alphanumeric) {
                buf[n] = c.to_ascii_lowercase();
                n += 1;
            }
            std::str::from_utf8(&buf[..n]).expect("ASCII")
        } else {
            owned = normalise(key);
            &owned
        };
        if norm.is_empty() {
            return None;
        }
        if let Some(e) = self.exact.get(norm) {
            return Some(e);
        }
        if let Some(one) = norm.strip_suffix('s') {
            let plural = self
                .exact
                .get(one)
                .or_else(|| one.strip_suffix('e').and_then(|k| self.exact.get(k)));
            if plural.is_some() {
                return plural;
            }
        }
        let last = norm.as_bytes()[norm.len() - 1];
        self.by_last
            .get(&last)?
            .iter()
            .map(|&i| &self.suffixes[i])
            .find(|(s, _)| norm.len() > s.len() && norm.ends_with(s.as_str()))
            .map(|(_, e)| e)
    }
}

/// Lower-case ASCII letters and digits only: `Date-of Birth` → `dateofbirth`.
pub(crate) fn normalise(key: &str) -> String {
    key.bytes()
        .filter(u8::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase() as char)
        .collect()
}

/// Whether a key rule's whole-value masking applies to this value: ages are
/// identifiers only over 89, so an `age` column keeps younger ages.
pub(crate) fn applies(entity: &Entity, value: &str) -> bool {
    match entity {
        Entity::Age => value.trim().parse::<f64>().map_or(true, |v| v >= 90.0),
        // most values start with a letter or digit: no need to trim them
        _ => {
            value
                .as_bytes()
                .first()
                .is_some_and(u8::is_ascii_alphanumeric)
                || !value.trim().is_empty()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_are_tried_in_the_order_they_were_added() {
        let mut r = KeyRules::empty();
        r.insert_suffix("phone", Entity::Phone);
        r.insert_suffix("_", Entity::Name); // no letter or digit: ends every key
        r.insert_suffix("ssn", Entity::Ssn);
        assert_eq!(r.lookup("home_phone"), Some(&Entity::Phone));
        assert_eq!(r.lookup("patient_ssn"), Some(&Entity::Name));
        assert_eq!(r.lookup("anything"), Some(&Entity::Name));
        r.remove("_");
        assert_eq!(r.lookup("patient_ssn"), Some(&Entity::Ssn));
        assert_eq!(r.lookup("anything"), None);
    }

    #[test]
    fn case_and_separator_insensitive() {
        let r = KeyRules::safe_harbor();
        for k in [
            "ssn",
            "SSN",
            "Date of Birth",
            "date_of_birth",
            "DateOfBirth",
            "date-of-birth",
            "patientName",
            "MRN",
            "Employer",
        ] {
            assert!(r.lookup(k).is_some(), "{k}");
        }
        assert_eq!(r.lookup("Patient Name"), Some(&Entity::Name));
        assert_eq!(r.lookup("phones"), Some(&Entity::Phone));
        assert_eq!(r.lookup("addresses"), Some(&Entity::Address));
        assert_eq!(r.lookup("emergency_contact_phone"), Some(&Entity::Phone));
        assert_eq!(
            r.lookup("ip_address"),
            Some(&Entity::Ip),
            "exact before endings"
        );
        assert_eq!(r.lookup("diagnosis"), None);
        assert_eq!(r.lookup("drug_name"), None, "`name` is exact only");
        assert_eq!(r.lookup("type"), None);
        assert_eq!(
            r.lookup("patients"),
            None,
            "a collection of records is no name"
        );
        assert_eq!(r.lookup(""), None);
        assert_eq!(r.lookup(&"x".repeat(100)), None);
    }

    #[test]
    fn configurable() {
        let mut r = KeyRules::safe_harbor();
        r.remove("name");
        assert_eq!(r.lookup("name"), None);
        r.insert("Badge No", Entity::Custom("badge".into()));
        assert_eq!(r.lookup("badge_no"), Some(&Entity::Custom("badge".into())));
        assert!(KeyRules::empty().lookup("ssn").is_none());
    }

    #[test]
    fn ages_only_over_89() {
        assert!(applies(&Entity::Age, "93"));
        assert!(!applies(&Entity::Age, "45"));
        assert!(applies(&Entity::Age, "ninety"));
        assert!(!applies(&Entity::Ssn, "  "));
    }
}
