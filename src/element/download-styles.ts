import { css } from 'lit';

/**
 * Styles of `<ws-download>`, after `sharedStyles`: the custom properties of `<ws-uploader>`, so one
 * theme styles both.
 * Colors follow the page's `color-scheme` (`light-dark()`).
 * @internal
 */
export const downloadStyles = css`
  :host {
    display: block;
  }
  .head {
    display: flex;
    flex-wrap: wrap;
    gap: 0.25rem 0.75rem;
    align-items: baseline;
  }
  [part~='name'] {
    font-weight: 600;
    overflow-wrap: anywhere;
  }
  .size {
    font-size: 0.875em;
    opacity: 0.8;
    font-variant-numeric: tabular-nums;
  }
  .actions {
    display: flex;
    gap: 0.25rem;
    margin-inline-start: auto;
  }
  [part~='progress'] {
    margin-top: 0.35rem;
    height: 0.45rem;
    border-radius: 0.25rem;
    background: color-mix(in srgb, var(--_border) 35%, transparent);
    overflow: hidden;
  }
  .bar {
    height: 100%;
    background: var(--_accent);
    transition: width 0.15s linear;
  }
  [part~='media'] {
    display: block;
    max-width: 100%;
    margin-top: 0.5rem;
    border-radius: var(--_radius);
  }
  audio[part~='media'] {
    width: 100%;
  }
  [part~='save-link'] {
    display: inline-block;
    margin-top: 0.5rem;
    color: var(--_accent);
  }
  [part~='error'] {
    margin: 0.35rem 0 0;
    color: var(--_error);
  }
  @media (prefers-reduced-motion: reduce) {
    .bar {
      transition: none;
    }
  }
`;
