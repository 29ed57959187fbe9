/** The app-hint magic number; src/trace/hint-abi.ts owns it, the insight engine checks hinted calls against it. */
export { SKY_HINT_MAGIC as HINT_MAGIC } from '../trace/hint-abi.js';
