# Seeds the first deploy only: the e-mail addresses are unique and every record is made with
# `create!`, so a second `db:seed` raises (which is why later deploys must not run it).
[
  { name: "テストユーザー1", email: "test1@example.com" },
  { name: "テストユーザー2", email: "test2@example.com" },
].each do |attributes|
  user = User.create!(attributes)
  1.upto(15) do |n|
    user.articles.create!(
      title: "#{user.name}の記事#{n}",
      content: "#{user.name}が書いた#{n}本目の記事です。",
      status: :published,
    )
  end
end
