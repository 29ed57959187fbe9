import { z } from 'zod';
import { parseSize } from './size.js';

/** A byte count written as a number or as a string such as "512M" or "1G" (binary units). */
export const SizeSchema = z.union([z.number(), z.string()]).transform((value, ctx) => {
  try {
    return parseSize(value);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
    return z.NEVER;
  }
});
