//! Policy model, domain and URL matching, categories and feeds, decisions.
