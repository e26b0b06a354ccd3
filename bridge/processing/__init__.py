"""From a stored event to adjustments: the processor, rules, reversals and customers."""
