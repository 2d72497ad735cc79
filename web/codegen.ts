import type { CodegenConfig } from "@graphql-codegen/cli";

// The canonical operations in schema/operations where they fit the console as they are, and the
// console's own (which select what its pages show) beside its sources.
const canonical = [
  "Viewer",
  "FollowExecutionEvents",
  "StopExecution",
  "PauseExecution",
  "ResumeExecution",
  "RetryStep",
  "SkipStep",
  "ExecutionTrace",
  "ListScenarios",
  "StartExecution",
  "Reviews",
  "ReviewUpdates",
  "SubmitReview",
].map((name) => `../schema/operations/${name}.graphql`);

const config: CodegenConfig = {
  schema: "../schema/schema.graphql",
  documents: [...canonical, "src/operations/*.graphql"],
  generates: {
    "src/gql/graphql.ts": {
      plugins: ["typescript", "typescript-operations", "typed-document-node"],
      config: {
        enumsAsTypes: true,
        avoidOptionals: { field: true, inputValue: false },
        scalars: { DateTime: "string", JSON: "unknown" },
        useTypeImports: true,
        nonOptionalTypename: false,
      },
    },
  },
};

export default config;
