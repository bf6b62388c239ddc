/** The origin private file system as the item store lays it out, read straight, for tests. */

/** The names in an item's folder (`ws-uploader-items/{itemId}`). */
export async function opfsItemNames(itemId: string): Promise<string[]> {
  const dir = await opfsItemDir(itemId);
  const names: string[] = [];
  for await (const name of (dir as unknown as { keys(): AsyncIterable<string> }).keys())
    names.push(name);
  return names;
}

/** An item's folder. */
export async function opfsItemDir(itemId: string): Promise<FileSystemDirectoryHandle> {
  return (
    await (await navigator.storage.getDirectory()).getDirectoryHandle('ws-uploader-items')
  ).getDirectoryHandle(itemId);
}
