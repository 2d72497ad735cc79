// A form generated from an input signature (a scenario's inputs, a review's form): one control per
// input, typed as declared (string, integer, number, boolean, object, array; enums as a choice),
// defaults filled in, required ones marked, and each value checked here before it is sent, with
// the same rules and words as the server's (scenarios/definition.py).
import { useId } from "react";

export type InputSpec = {
  name: string;
  type: string;
  required: boolean;
  default: unknown | null;
  description: string | null;
  enum: readonly unknown[] | null;
};

/** What each field holds as text (JSON for objects and arrays, the choice's index for enums). */
export type Drafts = Record<string, string>;
export type FieldErrors = Record<string, string>;

const NOT_SET = "";

/** The fields' starting text: each default, or empty. */
export function initialDrafts(specs: readonly InputSpec[]): Drafts {
  const drafts: Drafts = {};
  for (const spec of specs) drafts[spec.name] = draftOf(spec, spec.default);
  return drafts;
}

/** A value (a default, or a previous run's input) as a field's text. */
export function draftOf(spec: InputSpec, value: unknown): string {
  if (value === null || value === undefined) return NOT_SET;
  if (spec.enum) {
    const index = spec.enum.findIndex((option) => JSON.stringify(option) === JSON.stringify(value));
    return index < 0 ? NOT_SET : String(index);
  }
  if (spec.type === "string") return String(value);
  if (spec.type === "boolean") return value === true ? "true" : value === false ? "false" : NOT_SET;
  if (spec.type === "object" || spec.type === "array") return JSON.stringify(value, null, 2);
  return String(value);
}

function typeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

/** The values to send, or what is wrong with each field that is wrong (by input name). */
export function readDrafts(
  specs: readonly InputSpec[],
  drafts: Drafts,
): { values: Record<string, unknown>; errors: FieldErrors } {
  const values: Record<string, unknown> = {};
  const errors: FieldErrors = {};
  for (const spec of specs) {
    const text = drafts[spec.name] ?? NOT_SET;
    // Left empty is not given (as null is to the server): the default applies, if any.
    const blank = spec.type === "string" && !spec.enum ? text === NOT_SET : text.trim() === NOT_SET;
    if (blank) {
      if (spec.required) errors[spec.name] = "required";
      continue;
    }
    let value: unknown;
    if (spec.enum) {
      value = spec.enum[Number(text)];
    } else if (spec.type === "string") {
      value = text;
    } else if (spec.type === "integer") {
      const trimmed = text.trim();
      if (!/^[-+]?\d+$/.test(trimmed)) {
        errors[spec.name] = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(trimmed)
          ? `expected integer, got number (${trimmed})`
          : `expected integer, got "${trimmed}"`;
        continue;
      }
      value = Number(trimmed);
      if (!Number.isSafeInteger(value)) {
        errors[spec.name] = `${trimmed} is too large for an integer`;
        continue;
      }
    } else if (spec.type === "number") {
      const trimmed = text.trim();
      value = Number(trimmed);
      if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(trimmed) || !Number.isFinite(value)) {
        errors[spec.name] = `expected number, got "${trimmed}"`;
        continue;
      }
    } else if (spec.type === "boolean") {
      value = text === "true";
    } else {
      try {
        value = JSON.parse(text);
      } catch {
        errors[spec.name] = `expected ${spec.type} as JSON: ${text.length > 40 ? `${text.slice(0, 40)}…` : text} does not parse`;
        continue;
      }
      const got = typeOf(value);
      if (got !== spec.type) {
        errors[spec.name] = `expected ${spec.type}, got ${got}`;
        continue;
      }
    }
    values[spec.name] = value;
  }
  return { values, errors };
}

/** The server's field errors at `prefix.name` (e.g. inputs.count), by input name. */
export function fieldErrorsAt(
  prefix: string,
  fieldErrors: readonly { path: string; message: string }[] | undefined,
): FieldErrors {
  const found: FieldErrors = {};
  for (const error of fieldErrors ?? []) {
    if (error.path.startsWith(`${prefix}.`)) {
      const name = error.path.slice(prefix.length + 1).split(/[.[]/, 1)[0];
      found[name] = found[name] ? `${found[name]}; ${error.message}` : error.message;
    }
  }
  return found;
}

export function InputFields({
  specs,
  drafts,
  errors,
  onChange,
  disabled = false,
}: {
  specs: readonly InputSpec[];
  drafts: Drafts;
  errors: FieldErrors;
  /** The new texts, and the input that changed (its error is now out of date). */
  onChange: (drafts: Drafts, changed: string) => void;
  disabled?: boolean;
}) {
  const id = useId();
  if (specs.length === 0) return <p className="muted">It takes no inputs.</p>;
  return (
    <div className="input-fields">
      {specs.map((spec) => {
        const fieldId = `${id}-${spec.name}`;
        const error = errors[spec.name];
        const help = [spec.description && `${fieldId}-help`, error && `${fieldId}-error`].filter(Boolean).join(" ");
        const common = {
          id: fieldId,
          name: spec.name,
          disabled,
          "aria-invalid": error ? true : undefined,
          "aria-describedby": help || undefined,
          "aria-required": spec.required || undefined,
          "data-input": spec.name,
          "data-type": spec.type,
        } as const;
        const value = drafts[spec.name] ?? NOT_SET;
        const set = (text: string) => onChange({ ...drafts, [spec.name]: text }, spec.name);
        let control;
        if (spec.enum) {
          control = (
            <select {...common} value={value} onChange={(event) => set(event.target.value)}>
              {!spec.required || value === NOT_SET ? <option value="">{spec.required ? "Choose…" : "(not set)"}</option> : null}
              {spec.enum.map((option, index) => (
                <option key={index} value={String(index)}>
                  {typeof option === "string" ? option : JSON.stringify(option)}
                </option>
              ))}
            </select>
          );
        } else if (spec.type === "boolean") {
          control = (
            <select {...common} value={value} onChange={(event) => set(event.target.value)}>
              {!spec.required || value === NOT_SET ? <option value="">{spec.required ? "Choose…" : "(not set)"}</option> : null}
              <option value="true">true</option>
              <option value="false">false</option>
            </select>
          );
        } else if (spec.type === "object" || spec.type === "array") {
          control = (
            <textarea
              {...common}
              className="json"
              rows={Math.min(10, Math.max(3, value.split("\n").length))}
              spellCheck={false}
              placeholder={spec.type === "object" ? "{ }" : "[ ]"}
              value={value}
              onChange={(event) => set(event.target.value)}
            />
          );
        } else {
          control = (
            <input
              {...common}
              type="text"
              inputMode={spec.type === "integer" ? "numeric" : spec.type === "number" ? "decimal" : undefined}
              autoComplete="off"
              value={value}
              onChange={(event) => set(event.target.value)}
            />
          );
        }
        return (
          <div key={spec.name} className={`field input-field${error ? " invalid" : ""}`}>
            <label htmlFor={fieldId}>
              {spec.name}
              {spec.required && <span aria-hidden="true"> *</span>}
              <span className="muted small"> {spec.enum ? "one of" : spec.type}{spec.required ? ", required" : ""}</span>
            </label>
            {control}
            {spec.description && (
              <span id={`${fieldId}-help`} className="muted small">
                {spec.description}
              </span>
            )}
            {error && (
              <span id={`${fieldId}-error`} className="error small" data-field-error={spec.name}>
                {spec.name}: {error}
              </span>
            )}
          </div>
        );
      })}
    </div>
  );
}
