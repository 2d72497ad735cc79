"""The GraphQL surface: Strawberry types, thin resolvers, errors as schema types."""
