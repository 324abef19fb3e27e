/// The condition of a conditional counter operation (`inc_if`, `set_if` and their batches).
///
/// The comparison is `current <op> operand`, where `current` is the value stored before the
/// operation (0 when absent). Comparisons are exact over the whole `i64` range: Redis-side
/// they compare normalised decimal strings, never Lua doubles.
///
/// ```
/// use distkit_core::CounterComparator;
///
/// assert!(CounterComparator::Lt(10).matches(9));
/// assert!(!CounterComparator::Eq(i64::MAX).matches(i64::MAX - 1));
/// assert!(CounterComparator::Nil.matches(i64::MIN));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CounterComparator {
    /// Matches when the current value equals the operand.
    Eq(i64),
    /// Matches when the current value is less than the operand.
    Lt(i64),
    /// Matches when the current value is greater than the operand.
    Gt(i64),
    /// Matches when the current value differs from the operand.
    Ne(i64),
    /// Always matches: the operation is unconditional.
    Nil,
}

impl CounterComparator {
    /// Whether `current` satisfies this condition.
    pub fn matches(self, current: i64) -> bool {
        match self {
            Self::Eq(operand) => current == operand,
            Self::Lt(operand) => current < operand,
            Self::Gt(operand) => current > operand,
            Self::Ne(operand) => current != operand,
            Self::Nil => true,
        }
    }

    /// The wire form of this comparator: an operator code and the operand as a decimal string.
    ///
    /// The codes are those the distkit Lua scripts understand: `eq`, `lt`, `gt`, `ne`, `nil`.
    pub fn wire(self) -> (&'static str, i64) {
        match self {
            Self::Eq(operand) => ("eq", operand),
            Self::Lt(operand) => ("lt", operand),
            Self::Gt(operand) => ("gt", operand),
            Self::Ne(operand) => ("ne", operand),
            Self::Nil => ("nil", 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CounterComparator::{self, Eq, Gt, Lt, Ne, Nil};

    #[test]
    fn every_comparator_matches_exactly_at_the_extremes() {
        let cases: &[(CounterComparator, i64, bool)] = &[
            (Eq(i64::MAX), i64::MAX, true),
            (Eq(i64::MAX), i64::MAX - 1, false),
            (Eq(i64::MIN), i64::MIN, true),
            (Lt(i64::MIN), i64::MIN, false),
            (Lt(i64::MIN + 1), i64::MIN, true),
            (Lt(0), -1, true),
            (Lt(0), 0, false),
            (Gt(i64::MAX), i64::MAX, false),
            (Gt(i64::MAX - 1), i64::MAX, true),
            (Gt(0), 1, true),
            (Gt(0), 0, false),
            (Ne(5), 5, false),
            (Ne(5), 6, true),
            (Ne(i64::MIN), i64::MAX, true),
            (Nil, 0, true),
            (Nil, i64::MIN, true),
            (Nil, i64::MAX, true),
        ];
        for &(comparator, current, expected) in cases {
            assert_eq!(
                comparator.matches(current),
                expected,
                "{comparator:?} vs {current}"
            );
        }
    }

    #[test]
    fn wire_form_names_the_operator_and_operand() {
        assert_eq!(Eq(-3).wire(), ("eq", -3));
        assert_eq!(Lt(i64::MIN).wire(), ("lt", i64::MIN));
        assert_eq!(Gt(7).wire(), ("gt", 7));
        assert_eq!(Ne(0).wire(), ("ne", 0));
        assert_eq!(Nil.wire(), ("nil", 0));
    }
}
