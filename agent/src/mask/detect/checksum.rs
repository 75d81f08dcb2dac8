//! The validation rules of identifier formats: check digits and the ranges
//! issuers never assign. Inputs are ASCII digits/letters without separators.

/// Luhn (mod 10) over ASCII digits.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// A GS1 number (GTIN-14, as in a UDI's device identifier): its last digit
/// is the check digit of weights 3, 1, 3 ... counted from the right.
pub(crate) fn gs1(digits: &[u8]) -> bool {
    if !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let Some((check, body)) = digits.split_last() else {
        return false;
    };
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    (10 - sum % 10) % 10 == u32::from(check - b'0')
}

/// Payment card: Luhn plus a known issuer prefix for the length, which keeps
/// random long numbers (one in ten passes Luhn) out.
pub(crate) fn card(digits: &[u8]) -> bool {
    let n = digits.len();
    let p = |k: usize| -> u32 {
        std::str::from_utf8(&digits[..k])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let issuer = match digits[0] {
        b'4' => matches!(n, 13 | 16 | 19),
        b'3' => {
            (matches!(p(2), 34 | 37) && n == 15)
                || (matches!(p(2), 35) && (16..=19).contains(&n))
                || (matches!(p(2), 30 | 36 | 38 | 39) && (14..=19).contains(&n))
        }
        b'5' => (51..=55).contains(&p(2)) && n == 16,
        b'2' => (2221..=2720).contains(&p(4)) && n == 16,
        b'6' => {
            (p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3)) || p(2) == 62)
                && (16..=19).contains(&n)
        }
        _ => false,
    };
    issuer && luhn(digits)
}

/// NPI: ten digits starting 1 or 2, Luhn over the ISO prefix 80840 and the
/// number.
pub(crate) fn npi(digits: &[u8]) -> bool {
    if digits.len() != 10 || !matches!(digits[0], b'1' | b'2') {
        return false;
    }
    let mut full = *b"80840__________";
    full[5..].copy_from_slice(digits);
    luhn(&full)
}

/// SSN parts: area not 000, 666 or 900-999; group not 00; serial not 0000.
pub(crate) fn ssn(area: &[u8], group: &[u8], serial: &[u8]) -> bool {
    let area_ok = area != b"000" && area != b"666" && area[0] != b'9';
    area_ok && group != b"00" && serial != b"0000"
}

/// NANP: area code and exchange start 2-9 and are not N11 service codes.
pub(crate) fn nanp(area: &[u8], exchange: &[u8]) -> bool {
    let part =
        |p: &[u8]| p.len() == 3 && (b'2'..=b'9').contains(&p[0]) && !(p[1] == b'1' && p[2] == b'1');
    part(area) && part(exchange)
}

/// DEA registration: two letters (registrant type, then the registrant's
/// initial or 9) and seven digits whose last is the check digit.
pub(crate) fn dea(id: &[u8]) -> bool {
    if id.len() != 9 || !id[2..].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let first_ok = b"ABCDEFGHJKLMPRSTUX".contains(&id[0].to_ascii_uppercase());
    let second_ok = id[1].is_ascii_alphabetic() || id[1] == b'9';
    let d = |i: usize| u32::from(id[2 + i] - b'0');
    let check = (d(0) + d(2) + d(4) + 2 * (d(1) + d(3) + d(5))) % 10;
    first_ok && second_ok && check == d(6)
}

/// VIN (ISO 3779, North American check digit in position 9).
pub(crate) fn vin(id: &[u8]) -> bool {
    const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    if id.len() != 17 {
        return false;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c.to_ascii_uppercase() {
            c @ b'0'..=b'9' => u32::from(c - b'0'),
            b'A' | b'J' => 1,
            b'B' | b'K' | b'S' => 2,
            b'C' | b'L' | b'T' => 3,
            b'D' | b'M' | b'U' => 4,
            b'E' | b'N' | b'V' => 5,
            b'F' | b'W' => 6,
            b'G' | b'P' | b'X' => 7,
            b'H' | b'Y' => 8,
            b'R' | b'Z' => 9,
            _ => return None, // I, O, Q never appear
        })
    };
    let mut sum = 0;
    for (c, w) in id.iter().zip(WEIGHTS) {
        match value(*c) {
            Some(v) => sum += v * w,
            None => return false,
        }
    }
    let check = match sum % 11 {
        10 => b'X',
        r => b'0' + r as u8,
    };
    id[8].to_ascii_uppercase() == check
}

/// Medicare Beneficiary Identifier: 11 characters, C A AN N A AN N A A N N,
/// where letters exclude S, L, O, I, B and Z.
pub(crate) fn mbi(id: &[u8]) -> bool {
    if id.len() != 11 {
        return false;
    }
    let alpha = |c: u8| c.is_ascii_uppercase() && !b"SLOIBZ".contains(&c);
    let num = |c: u8| c.is_ascii_digit();
    let both = |c: u8| alpha(c) || num(c);
    (b'1'..=b'9').contains(&id[0])
        && alpha(id[1])
        && both(id[2])
        && num(id[3])
        && alpha(id[4])
        && both(id[5])
        && num(id[6])
        && alpha(id[7])
        && alpha(id[8])
        && num(id[9])
        && num(id[10])
}

/// IBAN lengths by country (the SWIFT registry's common entries).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// IBAN without spaces: the country's length and mod 97 == 1 (ISO 13616).
pub(crate) fn iban(id: &[u8]) -> bool {
    let Some(&(_, len)) = IBAN_LENGTHS
        .iter()
        .find(|(cc, _)| id.len() >= 2 && id[..2] == cc[..])
    else {
        return false;
    };
    if id.len() != len
        || !id[2..4].iter().all(u8::is_ascii_digit)
        || !id.iter().all(u8::is_ascii_alphanumeric)
    {
        return false;
    }
    let mut rem = 0u32;
    for &c in id[4..].iter().chain(&id[..4]) {
        let c = c.to_ascii_uppercase();
        if c.is_ascii_digit() {
            rem = (rem * 10 + u32::from(c - b'0')) % 97;
        } else {
            rem = (rem * 100 + u32::from(c - b'A' + 10)) % 97;
        }
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gs1_check_digits() {
        assert!(gs1(b"00643169007222"));
        assert!(!gs1(b"00643169007223"));
        assert!(!gs1(b"A0643169007221"), "digits only");
        assert!(
            gs1(b"10614141000415"),
            "a GTIN-14 under GS1's example company prefix"
        );
    }

    #[test]
    fn luhn_and_cards() {
        assert!(luhn(b"79927398713"));
        assert!(!luhn(b"79927398710"));
        assert!(card(b"4111111111111111"));
        assert!(card(b"378282246310005"));
        assert!(card(b"5555555555554444"));
        assert!(card(b"6011111111111117"));
        assert!(card(b"2223003122003222"));
        assert!(!card(b"4111111111111112"), "Luhn fails");
        assert!(!card(b"9111111111111119"), "no issuer starts with 9");
        assert!(!card(b"411111111111111"), "Visa is never 15 digits");
    }

    #[test]
    fn npi_check() {
        assert!(npi(b"1234567893"));
        assert!(!npi(b"1234567890"));
        assert!(!npi(b"3234567893"), "NPIs start 1 or 2");
    }

    #[test]
    fn ssn_ranges() {
        assert!(ssn(b"123", b"45", b"6789"));
        assert!(!ssn(b"000", b"45", b"6789"));
        assert!(!ssn(b"666", b"45", b"6789"));
        assert!(!ssn(b"912", b"45", b"6789"));
        assert!(!ssn(b"123", b"00", b"6789"));
        assert!(!ssn(b"123", b"45", b"0000"));
    }

    #[test]
    fn nanp_rules() {
        assert!(nanp(b"617", b"555"));
        assert!(!nanp(b"117", b"555"), "area codes start 2-9");
        assert!(!nanp(b"617", b"055"), "exchanges start 2-9");
        assert!(!nanp(b"911", b"555"), "N11 is a service code");
    }

    #[test]
    fn dea_check_digit() {
        assert!(dea(b"AB1234563"));
        assert!(!dea(b"AB1234564"));
        assert!(!dea(b"IB1234563"), "I is no registrant type");
    }

    #[test]
    fn vin_check_digit() {
        assert!(vin(b"1HGCM82633A004352"));
        assert!(vin(b"11111111111111111"));
        assert!(!vin(b"1HGCM82634A004352"));
        assert!(!vin(b"1HGCM82633A00435I"), "I never appears");
    }

    #[test]
    fn mbi_format() {
        assert!(mbi(b"1EG4TE5MK73"));
        assert!(!mbi(b"1EG4TE5MK7"), "too short");
        assert!(!mbi(b"0EG4TE5MK73"), "starts 1-9");
        assert!(!mbi(b"1SG4TE5MK73"), "S is excluded");
    }

    #[test]
    fn iban_mod97() {
        assert!(iban(b"GB82WEST12345698765432"));
        assert!(iban(b"DE89370400440532013000"));
        assert!(!iban(b"GB82WEST12345698765433"));
        assert!(!iban(b"GB82WEST1234569876543"), "length for GB is 22");
        assert!(!iban(b"ZZ82WEST12345698765432"), "unknown country");
    }
}
