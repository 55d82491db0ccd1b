// Types of highlight.js (a browser module the server's tests also import).
export function queryTerms(query: string): string[];
export function termRanges(text: string, terms: readonly string[]): Array<[number, number]>;
export function highlightPieces(text: string, query: string): Array<{ text: string; mark: boolean }>;
export function citationPieces(text: string): Array<{ text: string; cite?: undefined } | { cite: number[]; text?: undefined }>;
