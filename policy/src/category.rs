//! Categories: the one list of category names the policy accepts, split into the security
//! group and the content group.

use std::fmt;

/// The group a category belongs to; a policy configures each group separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CategoryGroup {
    /// Threats: evaluated before content categories.
    Security,
    /// Kinds of content an organisation may not want.
    Content,
}

impl CategoryGroup {
    /// Stable lower-case name (`security`, `content`).
    pub fn as_str(self) -> &'static str {
        match self {
            CategoryGroup::Security => "security",
            CategoryGroup::Content => "content",
        }
    }
}

/// Every category the policy accepts, in evaluation order within each group.
const KNOWN: &[(&str, CategoryGroup)] = &[
    ("malware", CategoryGroup::Security),
    ("phishing", CategoryGroup::Security),
    ("botnet", CategoryGroup::Security),
    ("command-and-control", CategoryGroup::Security),
    ("compromised", CategoryGroup::Security),
    ("cryptomining", CategoryGroup::Security),
    ("spyware", CategoryGroup::Security),
    ("spam", CategoryGroup::Security),
    ("potentially-malicious", CategoryGroup::Security),
    ("newly-seen", CategoryGroup::Security),
    ("adult", CategoryGroup::Content),
    ("gambling", CategoryGroup::Content),
    ("dating", CategoryGroup::Content),
    ("drugs", CategoryGroup::Content),
    ("alcohol-and-tobacco", CategoryGroup::Content),
    ("weapons", CategoryGroup::Content),
    ("violence", CategoryGroup::Content),
    ("hate", CategoryGroup::Content),
    ("hacking", CategoryGroup::Content),
    ("piracy", CategoryGroup::Content),
    ("proxies-and-vpn", CategoryGroup::Content),
    ("games", CategoryGroup::Content),
    ("social-networks", CategoryGroup::Content),
    ("chat", CategoryGroup::Content),
    ("streaming", CategoryGroup::Content),
    ("file-sharing", CategoryGroup::Content),
    ("shopping", CategoryGroup::Content),
    ("news", CategoryGroup::Content),
    ("webmail", CategoryGroup::Content),
    ("advertising", CategoryGroup::Content),
];

/// A known category name, such as `malware` or `gambling`.
///
/// Only names from the built-in list can be constructed, so a `Category` is always valid
/// and cheap to copy.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Category {
    name: &'static str,
    group: CategoryGroup,
}

impl Category {
    /// Looks up a category by name (case-sensitive, lower-case with `-`).
    pub fn parse(name: &str) -> Option<Category> {
        KNOWN
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(name, group)| Category {
                name,
                group: *group,
            })
    }

    /// The category's name.
    pub fn as_str(self) -> &'static str {
        self.name
    }

    /// The group the category belongs to.
    pub fn group(self) -> CategoryGroup {
        self.group
    }

    /// All known categories, security ones first.
    pub fn all() -> impl Iterator<Item = Category> {
        KNOWN.iter().map(|(name, group)| Category {
            name,
            group: *group,
        })
    }

    /// The known category names joined with `, `, for error messages.
    pub(crate) fn names_list() -> String {
        KNOWN
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Debug for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Category({})", self.name)
    }
}

impl serde::Serialize for Category {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name)
    }
}

impl<'de> serde::Deserialize<'de> for Category {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Category::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown category {name:?}; known categories: {}",
                Category::names_list()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_parse_with_their_group() {
        let malware = Category::parse("malware").unwrap();
        assert_eq!(malware.as_str(), "malware");
        assert_eq!(malware.group(), CategoryGroup::Security);
        assert_eq!(
            Category::parse("gambling").unwrap().group(),
            CategoryGroup::Content
        );
    }

    #[test]
    fn unknown_names_do_not_parse() {
        assert!(Category::parse("Malware").is_none());
        assert!(Category::parse("kittens").is_none());
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Category::all().map(Category::as_str).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KNOWN.len());
    }
}
