import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

/**
 * A confirmation before an action that cannot be undone: a native modal <dialog> (focus moves into
 * it, Escape cancels), stating the consequence in words.
 */
export function Confirm(props: {
  title: string;
  consequence: ComponentChildren;
  confirmLabel: string;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => d?.close();
  }, []);
  return (
    <dialog ref={ref} aria-labelledby="confirm-title" onCancel={props.onCancel} class="confirm">
      <h2 id="confirm-title">{props.title}</h2>
      <div class="consequence">{props.consequence}</div>
      <div class="actions">
        <button type="button" class="danger" onClick={props.onConfirm}>
          {props.confirmLabel}
        </button>
        <button type="button" onClick={props.onCancel} autofocus>
          Cancel
        </button>
      </div>
    </dialog>
  );
}

/** A new secret, shown exactly once, with a copy button; dismissing it forgets it. */
export function SecretOnce(props: { tokenId: string; secret: string; onDismiss: () => void }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    await navigator.clipboard.writeText(props.secret);
    setCopied(true);
  };
  return (
    <section class="secret" aria-labelledby="secret-title">
      <h2 id="secret-title">Secret of {props.tokenId}</h2>
      <p>
        Shown <strong>once</strong>: copy it now. Rotor stores only a digest and cannot show it again.
      </p>
      <code class="secret-value" data-testid="secret">
        {props.secret}
      </code>
      <div class="actions">
        <button type="button" onClick={() => void copy()}>
          {copied ? 'Copied' : 'Copy secret'}
        </button>
        <button type="button" onClick={props.onDismiss}>
          I have stored it
        </button>
      </div>
      <p class="status" role="status">
        {copied ? 'Copied to the clipboard.' : ''}
      </p>
    </section>
  );
}

/** An error a call returned, announced to screen readers. */
export function ErrorNote(props: { error: string | undefined }) {
  if (!props.error) return null;
  return (
    <p class="error" role="alert">
      {props.error}
    </p>
  );
}

/** A table that scrolls sideways on narrow screens instead of widening the page. */
export function Scroll(props: { children: ComponentChildren; label: string }) {
  return (
    // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable region must be reachable by keyboard (axe scrollable-region-focusable)
    <section class="scroll" tabIndex={0} aria-label={props.label}>
      {props.children}
    </section>
  );
}
