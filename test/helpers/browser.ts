/**
 * Debian's chromium (/usr/bin/chromium, installed by scripts/setup.sh),
 * driven by playwright-core: never a downloaded browser. Each context gets a
 * fresh user data dir and the flags this machine needs (no sandbox as root,
 * no GPU, no background connections to a network that is not there).
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import type { TeardownHost } from "./teardown.js";

export const CHROMIUM = "/usr/bin/chromium";
export const SCREENSHOTS = fileURLToPath(new URL("../../test-output/ui/", import.meta.url));

const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];

/** A new browser with its own empty profile, closed and removed at teardown. */
export async function openBrowser(t: TeardownHost): Promise<BrowserContext> {
  const userDataDir = await mkdtemp(path.join(os.tmpdir(), "bosun-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1366, height: 860 },
  });
  t.teardown(async () => {
    await context.close().catch(() => undefined);
    await rm(userDataDir, { recursive: true, force: true }).catch(() => undefined);
  });
  return context;
}

/** A full-page screenshot under test-output/ui/NAME.png. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
