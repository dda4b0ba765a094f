// A row of tokens coloured by a value (the compare view's heatmaps), readable without a mouse:
// Tab into it, ←/→ (Home/End) move between tokens, and a tap or focus shows the token's value in
// the line under the row (the mouse's hover shows it too).

/** One token as drawn: its text, colours and its value in words. */
export interface TokenCell {
  token: string;
  background: string;
  underline?: string;
  value: string;
  data: Record<string, string>;
}

/** Draws `cells` into `row`; `readout` shows the value of the token in focus. */
export function drawTokens(row: HTMLElement, readout: HTMLElement, cells: TokenCell[]) {
  readout.textContent = cells.length ? 'Tab to the tokens, then ←/→, or tap one: its value shows here.' : '';
  row.replaceChildren(
    ...cells.map((cell, i) => {
      const span = document.createElement('span');
      span.textContent = cell.token;
      span.style.background = cell.background;
      if (cell.underline) span.style.borderBottomColor = cell.underline;
      span.title = cell.value;
      span.setAttribute('aria-label', `${JSON.stringify(cell.token)}: ${cell.value}`);
      span.tabIndex = i === 0 ? 0 : -1;
      Object.assign(span.dataset, cell.data);
      span.addEventListener('focus', () => {
        for (const other of row.children) (other as HTMLElement).tabIndex = other === span ? 0 : -1;
        readout.textContent = `${JSON.stringify(cell.token)}: ${cell.value}`;
      });
      span.addEventListener('click', () => span.focus());
      return span;
    }),
  );
}

const KEYS: Record<string, (at: number, n: number) => number> = {
  ArrowRight: (at, n) => Math.min(n - 1, at + 1),
  ArrowLeft: (at) => Math.max(0, at - 1),
  Home: () => 0,
  End: (_, n) => n - 1,
};

/** Arrow keys move the focus along `row`'s tokens (set once per row). */
export function tokenKeys(row: HTMLElement) {
  row.addEventListener('keydown', (e) => {
    const move = KEYS[e.key];
    const tokens = [...row.children] as HTMLElement[];
    const at = tokens.indexOf(document.activeElement as HTMLElement);
    if (!move || at < 0) return;
    e.preventDefault();
    tokens[move(at, tokens.length)].focus();
  });
}
