import { useEffect, useRef, type ReactNode } from "react";

/** The side panel: a modal dialog on the right; Escape or Close closes it, focus starts at its title. */
export function SidePanel({ title, onClose, children }: { title: string; onClose: () => void; children: ReactNode }) {
  const heading = useRef<HTMLHeadingElement>(null);
  const opener = useRef<Element | null>(document.activeElement);

  useEffect(() => {
    heading.current?.focus();
    const previous = opener.current;
    return () => {
      if (previous instanceof HTMLElement && document.contains(previous)) previous.focus();
    };
  }, []);

  useEffect(() => {
    heading.current?.focus();
  }, [title]);

  return (
    <div className="overlay" onMouseDown={(event) => event.target === event.currentTarget && onClose()}>
      <aside
        className="panel"
        role="dialog"
        aria-modal="true"
        aria-labelledby="panel-title"
        onKeyDown={(event) => {
          if (event.key === "Escape") {
            event.stopPropagation();
            onClose();
          }
        }}
      >
        <div className="panel-head">
          <h2 id="panel-title" tabIndex={-1} ref={heading}>
            {title}
          </h2>
          <button type="button" className="ghost" onClick={onClose}>
            Close
          </button>
        </div>
        <div className="panel-body">{children}</div>
      </aside>
    </div>
  );
}
