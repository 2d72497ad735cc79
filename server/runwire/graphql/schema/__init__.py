"""The schema: Strawberry types, inputs, error unions, thin resolvers, and the document guards."""
