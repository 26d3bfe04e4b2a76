import { useState, type KeyboardEvent } from "react";

/**
 * Several values in one field: type one and press Enter or a comma to add it (Enter never submits
 * the form); Backspace in the empty field removes the last one; each value has a remove button.
 */
export function TagInput({
  id,
  label,
  values,
  onChange,
  describedBy,
  invalid,
  hint,
  pending,
  onPendingChange,
}: {
  id: string;
  label: string;
  values: string[];
  onChange: (values: string[]) => void;
  describedBy?: string;
  invalid?: boolean;
  hint?: string;
  pending: string;
  onPendingChange: (text: string) => void;
}) {
  const [focused, setFocused] = useState(false);
  const add = (raw: string) => {
    const additions = raw
      .split(",")
      .map((part) => part.trim())
      .filter((part) => part && !values.includes(part));
    if (additions.length) onChange([...values, ...Array.from(new Set(additions))]);
    onPendingChange("");
  };
  const onKeyDown = (event: KeyboardEvent<HTMLInputElement>) => {
    if (event.key === "Enter" || event.key === ",") {
      event.preventDefault();
      add(pending);
    } else if (event.key === "Backspace" && !pending && values.length) {
      onChange(values.slice(0, -1));
    }
  };
  const hintId = `${id}-hint`;
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {hint && (
        <p id={hintId} className="hint">
          {hint}
        </p>
      )}
      <div className={`tag-input${focused ? " focused" : ""}${invalid ? " invalid" : ""}`}>
        <ul className="chips" aria-label={`${label} added`}>
          {values.map((value) => (
            <li key={value} className="chip removable">
              {value}
              <button
                type="button"
                className="chip-remove"
                aria-label={`Remove ${value}`}
                onClick={() => onChange(values.filter((item) => item !== value))}
              >
                ×
              </button>
            </li>
          ))}
        </ul>
        <input
          id={id}
          value={pending}
          onChange={(event) => {
            const text = event.target.value;
            if (text.includes(",")) add(text);
            else onPendingChange(text);
          }}
          onKeyDown={onKeyDown}
          onFocus={() => setFocused(true)}
          onBlur={() => {
            setFocused(false);
            if (pending.trim()) add(pending);
          }}
          aria-invalid={invalid ? "true" : undefined}
          aria-describedby={[hint ? hintId : null, describedBy].filter(Boolean).join(" ") || undefined}
          placeholder="Type and press Enter"
          autoComplete="off"
        />
      </div>
    </div>
  );
}
