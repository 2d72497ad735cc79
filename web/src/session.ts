// Where the token is kept: the tab's sessionStorage by default (gone when the tab closes), or
// localStorage when the person ticks "remember on this device". Never in a URL.
const KEY = "runwire.token";

export function savedToken(): string | null {
  return window.sessionStorage.getItem(KEY) ?? window.localStorage.getItem(KEY);
}

export function saveToken(token: string, remember: boolean): void {
  forgetToken();
  (remember ? window.localStorage : window.sessionStorage).setItem(KEY, token);
}

export function forgetToken(): void {
  window.sessionStorage.removeItem(KEY);
  window.localStorage.removeItem(KEY);
}
