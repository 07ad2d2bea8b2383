//! The lingua backend: accurate, slow, and large (its models are compiled
//! in), so it is a cargo feature: `cargo build --release --features lingua`.
//! Only the languages a manifest allows are loaded. lingua knows 32 of the
//! 35 Salamandra languages: not gl, mt or oc.

use std::collections::HashMap;

use lingua::{Language, LanguageDetector, LanguageDetectorBuilder};

use super::{salamandra_code, Identify};

pub struct LinguaLid {
    detector: LanguageDetector,
    codes: HashMap<Language, String>,
}

impl LinguaLid {
    /// A detector for `allowed` (forja codes; empty: every compiled-in language).
    pub fn new(allowed: &[String]) -> Result<Self, String> {
        let mut langs: Vec<Language> = Language::all()
            .into_iter()
            .filter(|l| {
                let code = salamandra_code(&l.iso_code_639_1().to_string()).to_string();
                allowed.is_empty() || allowed.contains(&code)
            })
            .collect();
        langs.sort();
        if langs.len() < 2 {
            return Err(format!(
                "lingua knows fewer than two of the allowed languages {allowed:?} (it has no gl, mt or oc)"
            ));
        }
        let codes = langs
            .iter()
            .map(|l| {
                (
                    *l,
                    salamandra_code(&l.iso_code_639_1().to_string()).to_string(),
                )
            })
            .collect();
        Ok(LinguaLid {
            detector: LanguageDetectorBuilder::from_languages(&langs).build(),
            codes,
        })
    }
}

impl Identify for LinguaLid {
    fn identify(&self, line: &str) -> Option<(&str, f32)> {
        self.candidates(line, 1).into_iter().next()
    }

    fn candidates(&self, line: &str, k: usize) -> Vec<(&str, f32)> {
        self.detector
            .compute_language_confidence_values(line)
            .into_iter()
            .filter(|(_, c)| *c > 0.0)
            .take(k)
            .map(|(l, c)| (self.codes[&l].as_str(), c as f32))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_languages_the_salamandra_way() {
        let l = LinguaLid::new(&["ca".into(), "es".into(), "no".into(), "nn".into()]).unwrap();
        let (lang, conf) = l
            .identify("Tots els éssers humans neixen lliures i iguals en dignitat i en drets.")
            .unwrap();
        assert_eq!(lang, "ca");
        assert!(conf > 0.5);
        assert!(LinguaLid::new(&["gl".into(), "mt".into()]).is_err());
    }
}
