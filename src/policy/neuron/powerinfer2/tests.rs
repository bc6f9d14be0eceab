//! Plans of `powerinfer2` and `powerinfer`: budget, dependencies, the two-phase rule.
